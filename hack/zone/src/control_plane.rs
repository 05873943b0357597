//! A cluster's simulated control plane: its components, the manifest each one
//! runs at a version, and that manifest's hash. An upgrade replaces exactly the
//! components whose rendered manifest hash differs from the running one.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The control-plane components, in the order an upgrade replaces them.
pub const COMPONENTS: &[&str] = &["kube-apiserver", "kube-scheduler", "kube-controller-manager"];

/// Where a component stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentState {
    /// It runs `version` with `manifest-hash`.
    Running,
    /// An upgrade is replacing it now.
    Upgrading,
    /// An upgrade will replace it once the components before it are done.
    Pending,
}

/// One control-plane component, as stored and as the inspection shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Component {
    /// `kube-apiserver`, `kube-scheduler` or `kube-controller-manager`.
    pub name: String,
    /// The version it runs (the old one while `upgrading` or `pending`).
    pub version: String,
    /// `sha256:<hex>` of the manifest it runs.
    pub manifest_hash: String,
    /// Where it stands.
    pub state: ComponentState,
    /// Whether it is healthy (tests flip it with the admin health switch).
    pub healthy: bool,
}

/// The flags each component runs with; they do not depend on the version.
fn flags(component: &str) -> &'static [&'static str] {
    match component {
        "kube-apiserver" => &[
            "--secure-port=6443",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        ],
        "kube-scheduler" => &["--leader-elect=true", "--kubeconfig=/etc/kubernetes/scheduler.conf"],
        "kube-controller-manager" => &[
            "--leader-elect=true",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        ],
        _ => &[],
    }
}

/// The static-pod manifest `component` runs at `version` (without the `v`).
pub fn render_manifest(component: &str, version: &str) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {component}\n  namespace: kube-system\nspec:\n  containers:\n  \
         - name: {component}\n    image: registry.k8s.io/{component}:v{version}\n    command:\n    - {component}\n"
    );
    for flag in flags(component) {
        out.push_str(&format!("    - {flag}\n"));
    }
    out
}

/// `sha256:<hex>` of `manifest`.
pub fn manifest_hash(manifest: &str) -> String {
    let digest = Sha256::digest(manifest.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The hash of what `component` runs at `version`.
pub fn hash_at(component: &str, version: &str) -> String {
    manifest_hash(&render_manifest(component, version))
}

/// Every component running `version`, healthy: a new cluster's control plane.
pub fn at_version(version: &str) -> Vec<Component> {
    COMPONENTS
        .iter()
        .map(|name| Component {
            name: (*name).to_owned(),
            version: version.to_owned(),
            manifest_hash: hash_at(name, version),
            state: ComponentState::Running,
            healthy: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_deterministic_and_name_the_image() {
        let m = render_manifest("kube-scheduler", "1.34.2");
        assert_eq!(m, render_manifest("kube-scheduler", "1.34.2"));
        assert!(m.contains("image: registry.k8s.io/kube-scheduler:v1.34.2\n"), "{m}");
        assert!(m.contains("- --leader-elect=true\n"), "{m}");
    }

    #[test]
    fn hashes_differ_by_component_and_version_only() {
        let h = hash_at("kube-apiserver", "1.34.2");
        assert_eq!(h, hash_at("kube-apiserver", "1.34.2"));
        assert!(h.starts_with("sha256:") && h.len() == 7 + 64, "{h}");
        assert_ne!(h, hash_at("kube-apiserver", "1.34.3"));
        assert_ne!(h, hash_at("kube-scheduler", "1.34.2"));
        // A known value, so a change of the rendering is a visible decision.
        assert_eq!(manifest_hash("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_new_control_plane_runs_every_component_at_its_version() {
        let cp = at_version("1.33.5");
        assert_eq!(cp.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), COMPONENTS);
        assert!(cp.iter().all(|c| c.version == "1.33.5" && c.state == ComponentState::Running && c.healthy));
        assert_eq!(cp[0].manifest_hash, hash_at("kube-apiserver", "1.33.5"));
    }
}
