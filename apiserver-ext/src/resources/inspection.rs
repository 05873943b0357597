//! The orchestrator's inspection of a cluster (`GET /sks-cluster/{id}/inspection`,
//! free-form JSON in the API spec): the control plane's components and the
//! history of upgrades, read leniently (unknown fields and states are kept as
//! text, missing ones default).

use serde::Deserialize;
use serde_json::Value;

/// One control-plane component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Component {
    /// `kube-apiserver`, `kube-scheduler`, `kube-controller-manager`.
    pub name: String,
    /// The version it runs.
    pub version: String,
    /// Hash of its manifest.
    pub manifest_hash: String,
    /// `running`, `upgrading` or `pending`.
    pub state: String,
    /// Whether it passes its health checks.
    pub healthy: bool,
}

/// One upgrade of the control plane, as the orchestrator records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct UpgradeRecord {
    /// Its id.
    pub id: String,
    /// Version before.
    pub from: String,
    /// Target version.
    pub to: String,
    /// `manual` or `auto`.
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339, once ended.
    pub completed_at: Option<String>,
    /// Why it failed, or what it does.
    pub message: Option<String>,
}

impl UpgradeRecord {
    /// Whether it still runs.
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
struct ControlPlane {
    components: Vec<Component>,
}

/// The inspection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct Inspection {
    control_plane: ControlPlane,
    /// Upgrades, newest first.
    pub upgrades: Vec<UpgradeRecord>,
}

impl Inspection {
    /// Reads an inspection; anything unreadable is an empty one.
    pub fn parse(v: &Value) -> Self {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    /// The components.
    pub fn components(&self) -> &[Component] {
        &self.control_plane.components
    }

    /// The upgrade running now, if any.
    pub fn running(&self) -> Option<&UpgradeRecord> {
        self.upgrades.iter().find(|u| u.running())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_the_zone_shape_and_tolerates_gaps() {
        let v = json!({
            "control-plane": {"components": [
                {"name": "kube-apiserver", "version": "1.34.2", "manifest-hash": "sha256:ab", "state": "running", "healthy": true},
                {"name": "kube-scheduler", "state": "upgrading"}
            ]},
            "upgrades": [{"id": "u2", "from": "1.33.6", "to": "1.34.2", "trigger": "auto", "state": "running", "started-at": "2026-01-01T00:00:00Z", "extra": 1}]
        });
        let i = Inspection::parse(&v);
        assert_eq!(i.components().len(), 2);
        assert!(!i.components()[1].healthy);
        assert_eq!(i.running().map(|u| u.to.as_str()), Some("1.34.2"));
        assert!(Inspection::parse(&json!("garbage")).components().is_empty());
    }
}
