//! The container image `hack/image` builds: its OCI archive, unpacked into a
//! root filesystem that is listed and from which the binaries run with
//! `chroot`, as the image's user and with its environment (no container
//! runtime can run here: `podman run` fails on setrlimit in this sandbox).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TempDir;

/// Where `hack/image` writes the archive: `$SKS_IMAGE_ARCHIVE`, else
/// `<target dir>/image/sks.oci.tar`.
pub fn archive_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SKS_IMAGE_ARCHIVE") {
        return PathBuf::from(path);
    }
    let target = crate::bin_dir().parent().expect("target/<profile> has a parent").to_path_buf();
    target.join("image").join("sks.oci.tar")
}

/// Why the image cannot be checked on this machine, if it cannot.
pub fn unavailable(archive: &Path, root: bool) -> Option<String> {
    if !archive.exists() {
        return Some(format!(
            "{} does not exist: hack/test builds it with hack/image when buildah is installed",
            archive.display()
        ));
    }
    if !root {
        return Some("unpacking the image (files of UID 65532) and chroot need root".to_owned());
    }
    None
}

/// Whether this runs in CI (`CI=true`, as CI services set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The archive to check; `None` after saying loudly why it cannot be checked
/// here. In CI that is a failure: a skipped image test would pass having
/// checked nothing.
pub fn archive_or_skip(test: &str) -> Option<PathBuf> {
    let archive = archive_path();
    let Some(why) = unavailable(&archive, running_as_root()) else {
        return Some(archive);
    };
    assert!(!in_ci(), "{test}: CI must check the image, but {why}");
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    None
}

/// An image unpacked from its OCI archive into a temporary directory.
pub struct Image {
    /// The digest of its manifest (what a registry stores it under).
    pub digest: String,
    /// The compressed size of its layers, in bytes (what a node pulls).
    pub layer_bytes: u64,
    /// The runtime settings of its configuration (`User`, `Env`, `WorkingDir`, ...).
    pub config: serde_json::Value,
    rootfs: PathBuf,
    _dir: TempDir,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn blob(oci: &Path, digest: &serde_json::Value) -> PathBuf {
    let digest = digest.as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("digest {digest} is not sha256"));
    oci.join("blobs/sha256").join(hex)
}

impl Image {
    /// Unpacks the archive's only image: its layers, in order, with their
    /// owners, into a root filesystem (layers from scratch have no whiteouts).
    pub fn unpack(archive: &Path) -> Image {
        let dir = TempDir::new("image");
        let (oci, rootfs) = (dir.path().join("oci"), dir.path().join("rootfs"));
        std::fs::create_dir_all(&oci).unwrap();
        std::fs::create_dir_all(&rootfs).unwrap();
        run(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&oci));
        let index = read_json(&oci.join("index.json"));
        let manifests = index["manifests"].as_array().expect("index.json lists manifests");
        assert_eq!(manifests.len(), 1, "one image in the archive: {index}");
        let digest = manifests[0]["digest"].as_str().expect("manifest digest").to_owned();
        let manifest = read_json(&blob(&oci, &manifests[0]["digest"]));
        let config = read_json(&blob(&oci, &manifest["config"]["digest"]));
        let mut layer_bytes = 0;
        for layer in manifest["layers"].as_array().expect("layers") {
            let media_type = layer["mediaType"].as_str().unwrap_or_default();
            assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+gzip", "layer {layer}");
            layer_bytes += layer["size"].as_u64().expect("layer size");
            run(Command::new("tar").arg("-xzf").arg(blob(&oci, &layer["digest"])).arg("-C").arg(&rootfs).args([
                "--numeric-owner",
                "--same-owner",
                "--same-permissions",
            ]));
        }
        Image { digest, layer_bytes, config: config["config"].clone(), rootfs, _dir: dir }
    }

    /// Where `path` of the image is on this machine.
    pub fn path(&self, path: &str) -> PathBuf {
        self.rootfs.join(path.trim_start_matches('/'))
    }

    /// Every path of the root filesystem but `/`, sorted, one line each:
    /// `type mode uid:gid path`, and `-> target` for a symbolic link.
    pub fn listing(&self) -> Vec<String> {
        let mut lines = Vec::new();
        list(&self.rootfs, &self.rootfs, &mut lines);
        lines.sort();
        lines
    }

    /// The configured user (`uid:gid`).
    pub fn user(&self) -> &str {
        self.config["User"].as_str().unwrap_or_default()
    }

    /// `program` of the image, run as a container runtime would: in its root
    /// filesystem, as its user, with only its environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("chroot");
        cmd.arg(format!("--userspec={}", self.user())).arg(&self.rootfs).arg(program).env_clear();
        for var in self.config["Env"].as_array().into_iter().flatten() {
            let (name, value) = var.as_str().and_then(|v| v.split_once('=')).expect("Env holds NAME=value");
            cmd.env(name, value);
        }
        cmd
    }

    /// Puts a file into the image as a runtime mounts one (owner root, group
    /// `gid`, `mode`), creating its directories.
    pub fn mount_file(&self, path: &str, contents: &str, mode: u32, gid: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        let host = self.path(path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(&host, contents).unwrap();
        std::os::unix::fs::chown(&host, Some(0), Some(gid)).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn list(root: &Path, dir: &Path, lines: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let name = format!("/{}", path.strip_prefix(root).unwrap().display());
        let kind = match meta.file_type() {
            t if t.is_symlink() => "link",
            t if t.is_dir() => "dir",
            t if t.is_file() => "file",
            _ => "other",
        };
        let mut line = format!("{kind} {:04o} {}:{} {name}", meta.mode() & 0o7777, meta.uid(), meta.gid());
        if kind == "link" {
            line += &format!(" -> {}", std::fs::read_link(&path).unwrap().display());
        }
        lines.push(line);
        if kind == "dir" {
            list(root, &path, lines);
        }
    }
}

/// What the Dockerfile's final stage puts in its image.
#[derive(Debug, PartialEq)]
pub struct DockerfileImage {
    /// The image of the final `FROM`.
    pub base: String,
    /// Its `USER`.
    pub user: String,
    /// The files it copies in, as `file <mode> 0:0 <path>` listing lines.
    pub files: Vec<String>,
}

/// Reads the final stage of a Dockerfile of the shape this repository's has:
/// a build stage that `install -m MODE -t DIR FILES...`, and a final stage
/// that copies DIR in with `COPY --from=<stage> DIR/ DEST/` and sets `USER`.
pub fn dockerfile_image(text: &str) -> DockerfileImage {
    let joined = text.replace("\\\n", " ");
    let lines: Vec<Vec<&str>> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let last_from = lines.iter().rposition(|l| l[0] == "FROM").expect("a FROM");
    let final_stage = &lines[last_from..];
    let base = final_stage[0][1].to_owned();
    let user = final_stage.iter().find(|l| l[0] == "USER").map(|l| l[1].to_owned()).expect("a USER");
    let mut files = Vec::new();
    for copy in final_stage.iter().filter(|l| l[0] == "COPY") {
        let args: Vec<&str> = copy[1..].iter().copied().filter(|a| !a.starts_with("--")).collect();
        let (dest, sources) = args.split_last().expect("COPY SRC DEST");
        for source in sources {
            for (mode, name) in installed_into(&lines[..last_from], source.trim_end_matches('/')) {
                files.push(format!("file {mode} 0:0 {}/{name}", dest.trim_end_matches('/')));
            }
        }
    }
    DockerfileImage { base, user, files }
}

/// The (mode, file name) pairs `install -m MODE -t dir FILES...` commands of `stages` put into `dir`.
fn installed_into(stages: &[Vec<&str>], dir: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in stages {
        for command in line.split(|w| *w == "&&") {
            let Some(start) = command.iter().position(|w| *w == "install") else { continue };
            let (mut mode, mut target, mut files) = ("0755".to_owned(), None, Vec::new());
            let mut words = command[start + 1..].iter();
            while let Some(word) = words.next() {
                match *word {
                    "-m" => mode = format!("{:0>4}", words.next().expect("-m MODE")),
                    "-t" => target = words.next().copied(),
                    w if w.starts_with('-') => {}
                    w => files.push(w.rsplit('/').next().unwrap().to_owned()),
                }
            }
            if target == Some(dir) {
                found.extend(files.into_iter().map(|f| (mode.clone(), f)));
            }
        }
    }
    found
}

/// `hack/image.layout`: the image's settings and its complete listing.
#[derive(Debug, Default)]
pub struct Layout {
    /// `base`: the Dockerfile's runtime image whose layout this records.
    pub base: String,
    /// `user`.
    pub user: String,
    /// `workdir`.
    pub workdir: String,
    /// `env` lines, in order.
    pub env: Vec<String>,
    /// Listing lines (`type mode uid:gid path [-> target]`), sorted.
    pub entries: Vec<String>,
}

/// Parses `hack/image.layout` (comments start with `#`, also after an entry).
pub fn layout(text: &str) -> Layout {
    let mut layout = Layout::default();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        let Some((key, rest)) = line.split_once(char::is_whitespace) else { continue };
        let rest = rest.trim().to_owned();
        match key {
            "base" => layout.base = rest,
            "user" => layout.user = rest,
            "workdir" => layout.workdir = rest,
            "env" => layout.env.push(rest),
            "dir" | "file" | "link" => {
                layout.entries.push(format!("{key} {}", rest.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
            other => panic!("hack/image.layout: unknown line kind {other:?}"),
        }
    }
    layout.entries.sort();
    layout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_stage_holds_what_the_build_stage_installs_into_the_copied_directory() {
        let text = "FROM rust AS build\nRUN cargo build \\\n && install -D -m 755 -t /out a/x b/y \\\n && install -t /other z\n\
                    # a comment\nFROM base:tag\nCOPY --from=build /out/ /usr/bin/\nUSER 1:2\n";
        assert_eq!(
            dockerfile_image(text),
            DockerfileImage {
                base: "base:tag".into(),
                user: "1:2".into(),
                files: vec!["file 0755 0:0 /usr/bin/x".into(), "file 0755 0:0 /usr/bin/y".into()],
            }
        );
    }

    #[test]
    fn layout_lines_are_normalized_and_comments_dropped() {
        let l = layout("# header\nbase b\nuser 1:2\nenv A=1\nfile  0644 0:0   /etc/x   # why\nlink 0777 0:0 /a -> b\n");
        assert_eq!((l.base.as_str(), l.user.as_str(), l.env.clone()), ("b", "1:2", vec!["A=1".to_owned()]));
        assert_eq!(l.entries, ["file 0644 0:0 /etc/x", "link 0777 0:0 /a -> b"]);
    }

    #[test]
    fn a_missing_archive_or_a_non_root_user_is_named() {
        let missing = Path::new("/nonexistent/sks.oci.tar");
        assert!(unavailable(missing, true).unwrap().contains("hack/image"));
        let present = Path::new("/proc/self/status");
        assert!(unavailable(present, false).unwrap().contains("root"));
        assert_eq!(unavailable(present, true), None);
    }
}
