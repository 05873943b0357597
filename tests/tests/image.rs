//! The container image `hack/image` builds (`hack/test` builds it first when
//! buildah is installed; CI requires it). Its root filesystem is unpacked from
//! the OCI archive and compared with `hack/image.layout`, the listing of what
//! the Dockerfile's image holds; then its binaries run from that root
//! filesystem as its user (65532), with only its environment and the files a
//! runtime adds (/etc/hosts, the mounted Secrets): `--help`, then both servers
//! against a local zone reached by a host name until they answer `/readyz`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sks_e2e::env::TestEnv;
use sks_e2e::image::{self, Image};
use sks_e2e::kubeapi::KubeOptions;
use sks_e2e::kubectl::Kubectl;
use sks_e2e::pki::TestPki;
use sks_e2e::zone::{TEST_KEY, TEST_SECRET, Zone};
use sks_e2e::{TempDir, kill_child, spawn_reporting, wait_for};

/// The size target of the image: both binaries and their runtime, compressed.
const MAX_LAYER_BYTES: u64 = 40_000_000;

/// distroless' users and groups, exactly (GoogleContainerTools/distroless
/// @cd080764, base/testdata/base.yaml, "known users" and "known groups").
const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
                      nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n";

/// The host name the binaries reach the zone by, resolved through the image's
/// NSS configuration from the /etc/hosts a runtime writes (as a pod's `hostAliases`).
const ZONE_HOST: &str = "orchestrator.sks.test";

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn env_of(image: &Image) -> Vec<String> {
    let env = image.config["Env"].as_array().into_iter().flatten();
    env.map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn the_image_holds_the_dockerfile_layout_and_nothing_else() {
    let Some(archive) = image::archive_or_skip("the_image_holds_the_dockerfile_layout_and_nothing_else") else {
        return;
    };
    let image = Image::unpack(&archive);
    eprintln!("checking {} ({})", archive.display(), image.digest);
    let layout = image::layout(&repo_file("hack/image.layout"));
    let dockerfile = image::dockerfile_image(&repo_file("Dockerfile"));

    // The layout records the Dockerfile's image: its base, user and files.
    assert_eq!(
        dockerfile.base, layout.base,
        "the Dockerfile's runtime image changed: record its layout in hack/image.layout (and build it in hack/image)"
    );
    assert_eq!(dockerfile.user, layout.user, "the Dockerfile's USER");
    assert!(!dockerfile.files.is_empty(), "no file found in the Dockerfile's final stage");
    for file in &dockerfile.files {
        assert!(layout.entries.contains(file), "the Dockerfile puts `{file}` in its image; hack/image.layout lacks it");
    }

    // The image holds exactly the layout.
    let listing = image.listing();
    let missing: Vec<&String> = layout.entries.iter().filter(|e| !listing.contains(e)).collect();
    let unexpected: Vec<&String> = listing.iter().filter(|e| !layout.entries.contains(e)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "the image differs from hack/image.layout\nmissing:\n  {}\nnot in the layout:\n  {}",
        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
        unexpected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
    assert_eq!(image.user(), layout.user);
    assert_eq!(image.config["WorkingDir"], layout.workdir.as_str());
    assert_eq!(env_of(&image), layout.env);
    // deploy/ sets each container's command; distroless/cc sets neither.
    assert!(image.config["Entrypoint"].is_null() && image.config["Cmd"].is_null(), "{}", image.config);

    // What distroless defines in those files, and what the binaries read from them.
    assert_eq!(std::fs::read_to_string(image.path("/etc/passwd")).unwrap(), PASSWD);
    assert_eq!(std::fs::read_to_string(image.path("/etc/group")).unwrap(), GROUP);
    let nsswitch = std::fs::read_to_string(image.path("/etc/nsswitch.conf")).unwrap();
    assert!(
        nsswitch.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["hosts:", "files", "dns"]),
        "{nsswitch}"
    );
    let bundle = std::fs::read(image.path("/etc/ssl/certs/ca-certificates.crt")).unwrap();
    let roots: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(&bundle)
        .map(|pem| {
            let pem = pem.expect("a PEM block");
            assert!(pem.parse_x509().is_ok(), "an unparsable certificate in the CA bundle");
            pem
        })
        .collect();
    assert!(roots.len() >= 100, "only {} CA certificates in the bundle", roots.len());

    assert!(
        image.layer_bytes < MAX_LAYER_BYTES,
        "the image is {} bytes compressed, over the {MAX_LAYER_BYTES} target",
        image.layer_bytes
    );
}

/// A process started from the image; killed on drop.
struct InImage(Option<Child>);

impl Drop for InImage {
    fn drop(&mut self) {
        kill_child(&mut self.0);
    }
}

impl InImage {
    /// The real and effective user and group of the process (`/proc/<pid>/status`).
    fn ids(&self) -> (String, String) {
        let pid = self.0.as_ref().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().skip(1).take(2).collect::<Vec<_>>().join(" ")
        };
        (field("Uid:"), field("Gid:"))
    }
}

/// Mounts the orchestrator credentials as deploy/ does: a Secret's directory,
/// files readable by the pod's fsGroup (mode 0440).
fn mount_credentials(image: &Image, dir: &str) {
    image.mount_file(&format!("{dir}/api-key"), TEST_KEY, 0o440, 65532);
    image.mount_file(&format!("{dir}/api-secret"), TEST_SECRET, 0o440, 65532);
}

/// The orchestrator settings of deploy/'s Deployments, with the zone reached by [`ZONE_HOST`].
fn orchestrator_env(cmd: &mut Command, zone: &Zone, cluster: &str, credentials: &str) {
    let port = zone.url.rsplit(':').next().unwrap();
    cmd.env("SKS_CLUSTER_ID", cluster)
        .env("EXOSCALE_API_ENDPOINT", format!("http://{ZONE_HOST}:{port}/v2"))
        .env("EXOSCALE_API_ZONE", "ch-gva-2")
        .env("EXOSCALE_API_CREDENTIALS_FILE", credentials)
        .env("RUST_LOG", "warn");
}

fn start_apiserver(image: &Image, zone: &Zone, cluster: &str) -> (InImage, String) {
    let mut cmd = image.command("/usr/local/bin/sks-apiserver");
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(["--tls-cert-file", "/etc/sks-apiserver/serving/tls.crt"])
        .args(["--tls-private-key-file", "/etc/sks-apiserver/serving/tls.key"])
        // The image is read-only in deploy/; /tmp is the one place its user may write.
        .args(["--metadata-file", "/tmp/sks-apiserver-metadata.json"])
        .stderr(Stdio::inherit());
    orchestrator_env(&mut cmd, zone, cluster, "/etc/sks-apiserver/credentials");
    let (child, line) = spawn_reporting(&mut cmd, "sks-apiserver in the image");
    let url = line.strip_prefix("sks-apiserver listening on ").expect("address line").trim().to_owned();
    (InImage(Some(child)), url)
}

/// Runs `cmd` until it exits (at most 30 s): its status and stderr.
fn run_to_exit(mut cmd: Command) -> (std::process::ExitStatus, String) {
    use std::io::Read as _;
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still runs after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_run_from_the_image_as_nonroot() {
    let Some(archive) = image::archive_or_skip("the_binaries_run_from_the_image_as_nonroot") else {
        return;
    };
    let image = Image::unpack(&archive);
    eprintln!("running {} ({})", archive.display(), image.digest);
    assert_eq!(image.user(), "65532:65532");
    for program in ["/usr/local/bin/sks-ccm", "/usr/local/bin/sks-apiserver"] {
        let out = image.command(program).arg("--help").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Usage:"),
            "{program} --help in the image: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // What a runtime adds to the image: /etc/hosts, and deploy/'s Secrets.
    image.mount_file(
        "/etc/hosts",
        &format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{ZONE_HOST}\n"),
        0o644,
        0,
    );
    let env = TestEnv::builder().kube(KubeOptions::default()).start().await;
    let (zone, cluster) = (&env.zone, env.cluster.to_string());
    let pki_dir = TempDir::new("image-pki");
    let pki = TestPki::new(pki_dir.path());
    let (cert, key) = pki.serving("serving", &[]);
    for (file, from) in [("tls.crt", &cert), ("tls.key", &key)] {
        let pem = std::fs::read_to_string(from).unwrap();
        image.mount_file(&format!("/etc/sks-apiserver/serving/{file}"), &pem, 0o440, 65532);
    }
    mount_credentials(&image, "/etc/sks-apiserver/credentials");

    // sks-apiserver: the zone by name (NSS, /etc/hosts), the CA bundle (its
    // HTTP client refuses to start without one), TLS served until /readyz.
    let (apiserver, url) = start_apiserver(&image, zone, &cluster);
    assert_eq!(apiserver.ids(), ("65532 65532".to_owned(), "65532 65532".to_owned()), "uid and gid");
    orchestrator::install_crypto_provider();
    let https = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.serving_ca.cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    wait_for("sks-apiserver in the image to answer /readyz", Duration::from_secs(30), || {
        let (https, readyz) = (https.clone(), format!("{url}/readyz"));
        async move { https.get(readyz).send().await.is_ok_and(|r| r.status() == 200).then_some(()) }
    })
    .await;
    drop(apiserver);

    // sks-ccm as deploy/ runs it: leader election through the cluster's API
    // (kube-rs over TLS), the cloud cache from the zone, until /readyz.
    let kube = env.kube();
    image.mount_file("/etc/sks-ccm/kubeconfig", &std::fs::read_to_string(&kube.kubeconfig).unwrap(), 0o440, 65532);
    mount_credentials(&image, "/etc/sks-ccm/credentials");
    let mut cmd = image.command("/usr/local/bin/sks-ccm");
    cmd.args(["--kubeconfig", "/etc/sks-ccm/kubeconfig", "--bind-address", "127.0.0.1:0", "--leader-elect=true"])
        .env("HOSTNAME", "sks-ccm-in-image")
        .stderr(Stdio::inherit());
    orchestrator_env(&mut cmd, zone, &cluster, "/etc/sks-ccm/credentials");
    let (child, line) = spawn_reporting(&mut cmd, "sks-ccm in the image");
    let ccm = InImage(Some(child));
    assert_eq!(ccm.ids(), ("65532 65532".to_owned(), "65532 65532".to_owned()), "uid and gid");
    let ccm_url = line.rsplit(' ').next().unwrap().to_owned();
    wait_for("sks-ccm in the image to answer /readyz", Duration::from_secs(30), || {
        let readyz = format!("{ccm_url}/readyz");
        async move { reqwest::get(readyz).await.is_ok_and(|r| r.status() == 200).then_some(()) }
    })
    .await;
    let k: Kubectl = kube.kubectl();
    wait_for("sks-ccm in the image to take its Lease", Duration::from_secs(30), || {
        let k = k.clone();
        async move {
            let out = k.run(&["-n", "kube-system", "get", "lease", "sks-ccm", "-o", "jsonpath={.spec.holderIdentity}"]);
            String::from_utf8_lossy(&out.stdout).starts_with("sks-ccm-in-image").then_some(())
        }
    })
    .await;
    drop(ccm);

    // The CA bundle is what the binaries trust: without it they refuse to start.
    std::fs::remove_file(image.path("/etc/ssl/certs/ca-certificates.crt")).unwrap();
    let mut cmd = image.command("/usr/local/bin/sks-apiserver");
    cmd.args(["--listen", "127.0.0.1:0", "--tls-cert-file", "/etc/sks-apiserver/serving/tls.crt"])
        .args(["--tls-private-key-file", "/etc/sks-apiserver/serving/tls.key"]);
    orchestrator_env(&mut cmd, zone, &cluster, "/etc/sks-apiserver/credentials");
    let (status, stderr) = run_to_exit(cmd);
    assert!(!status.success() && stderr.contains("No CA certificates"), "{status}: {stderr}");
}
