//! `hack/local-up`, README's first command, as a developer runs it: the whole
//! stack comes up (3 initialized, Ready nodes; the seeded nodepool served
//! through the APIService), Ctrl-C stops every process it started and exits
//! 130, SIGTERM 143, a second run on the same directory comes up again, a
//! Ctrl-C during startup stops what was started so far, and nodes that never
//! become Ready end the script with an error naming the logs, not "up"; the
//! autoscaling commands it prints add nodes for a Deployment and take them away.
//!
//! Each run gets its own directory (`SKS_LOCAL_DIR`), ports picked by the
//! binaries (`SKS_*_PORT=0`) and the binaries already built (`SKS_NO_BUILD`,
//! `SKS_BIN_DIR`). The script runs in its own process group, as in a terminal,
//! and the whole group is killed if a test fails.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sks_e2e::{TempDir, bin, bin_dir};

const UP: &str = "The local stack is up.";
/// Bounds a stop: the script gives each process 10 s between SIGTERM and SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines a process wrote on one stream, and whether the stream ended.
#[derive(Default)]
struct Output {
    state: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Output {
    fn drain(self: &Arc<Self>, stream: impl Read + Send + 'static) {
        let out = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                out.state.lock().unwrap().0.push(line);
                out.changed.notify_all();
            }
            out.state.lock().unwrap().1 = true;
            out.changed.notify_all();
        });
    }

    fn text(&self) -> String {
        self.state.lock().unwrap().0.join("\n")
    }

    /// Waits (bounded) until the stream ended: true if it did.
    fn wait_end(&self, timeout: Duration) -> bool {
        let state = self.state.lock().unwrap();
        !self.changed.wait_timeout_while(state, timeout, |s| !s.1).unwrap().1.timed_out()
    }

    /// Waits for a line containing `pattern`: true once seen, false if the stream ended or `timeout` passed.
    fn wait_line(&self, pattern: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if state.0.iter().any(|l| l.contains(pattern)) {
                return true;
            }
            let now = Instant::now();
            if state.1 || now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }
}

/// One run of `hack/local-up`; killed with its whole process group when dropped.
struct LocalUp {
    child: Option<Child>,
    pgid: u32,
    dir: PathBuf,
    stdout: Arc<Output>,
    stderr: Arc<Output>,
}

impl LocalUp {
    fn start(dir: &Path, env: &[(&str, &str)]) -> LocalUp {
        use std::os::unix::process::CommandExt as _;
        for b in ["sks-zone", "kube-standin", "sks-apiserver", "sks-ccm"] {
            bin(b);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/local-up");
        let mut cmd = Command::new(script);
        cmd.env("SKS_LOCAL_DIR", dir)
            .env("SKS_NO_BUILD", "1")
            .env("SKS_BIN_DIR", bin_dir())
            .env("SKS_READY_TIMEOUT", "60")
            .env_remove("KUBE_ASSETS")
            .env_remove("KUBECONFIG");
        for port in ["SKS_ZONE_PORT", "SKS_KUBE_PORT", "SKS_APISERVER_PORT", "SKS_CCM_PORT"] {
            cmd.env(port, "0");
        }
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("starting hack/local-up");
        let (stdout, stderr) = (Arc::new(Output::default()), Arc::new(Output::default()));
        stdout.drain(child.stdout.take().expect("piped stdout"));
        stderr.drain(child.stderr.take().expect("piped stderr"));
        let pgid = child.id();
        LocalUp { child: Some(child), pgid, dir: dir.to_owned(), stdout, stderr }
    }

    /// What the script printed and the tails of its logs, for a failure message.
    fn report(&self) -> String {
        let mut s = format!("--- stdout\n{}\n--- stderr\n{}\n", self.stdout.text(), self.stderr.text());
        for log in ["zone.log", "kube.log", "apiserver.log", "ccm.log"] {
            let text = std::fs::read_to_string(self.dir.join("logs").join(log)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            s += &format!("--- {log} (last lines)\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        s
    }

    fn wait_line(&self, pattern: &str, timeout: Duration) {
        assert!(
            self.stdout.wait_line(pattern, timeout),
            "hack/local-up did not print {pattern:?} within {timeout:?}\n{}",
            self.report()
        );
    }

    /// The processes of the pid file: (name, pid), the script first.
    fn pids(&self) -> Vec<(String, u32)> {
        let text = std::fs::read_to_string(self.dir.join("local-up.pids")).expect("reading local-up.pids");
        text.lines()
            .map(|l| {
                let (name, pid) = l.split_once(' ').expect("name pid");
                (name.to_owned(), pid.parse().expect("pid"))
            })
            .collect()
    }

    /// Sends `signal` to the whole process group (as Ctrl-C in a terminal does) or to the script only.
    fn signal(&self, signal: &str, group: bool) {
        let target = if group { format!("-{}", self.pgid) } else { self.pgid.to_string() };
        let ok = Command::new("kill").args(["-s", signal, "--", &target]).status().expect("running kill");
        assert!(ok.success(), "kill -s {signal} -- {target}");
    }

    /// Waits (bounded) for the script to exit and for everything it printed: its status.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for hack/local-up") {
                self.child = None;
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "hack/local-up still running {timeout:?} after the signal\n{}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The pipes end when no process holds them: the script and everything it started.
        let ended = self.stdout.wait_end(Duration::from_secs(10)) && self.stderr.wait_end(Duration::from_secs(10));
        assert!(ended, "hack/local-up exited ({status}) but a process still holds its output\n{}", self.report());
        status
    }

    /// Checks after the script's exit that nothing it started runs: not the processes
    /// `started` named, nor anything else in its process group, and its pid file is gone.
    fn assert_all_stopped(&self, started: &[(String, u32)]) {
        for (name, pid) in started {
            assert!(!alive(*pid, name), "{name} (pid {pid}) still runs after hack/local-up exited\n{}", self.report());
        }
        let left = group_members(self.pgid);
        assert!(left.is_empty(), "processes left in hack/local-up's group: {left:?}\n{}", self.report());
        assert!(!self.dir.join("local-up.pids").exists(), "local-up.pids left behind");
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", self.pgid)]).status();
            let _ = child.wait();
        }
        // Whatever survived the script (a failure the test is about to report).
        for pid in group_members(self.pgid) {
            let _ = Command::new("kill").args(["-s", "KILL", &pid.to_string()]).status();
        }
    }
}

/// Field `n` (1-based, as in proc(5)) of /proc/<pid>/stat, for n >= 3 (after the command name).
fn stat_field(pid: &str, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(n - 3).map(str::to_owned)
}

/// Whether `pid` runs (not a zombie) and is `name` (not a reused pid).
fn alive(pid: u32, name: &str) -> bool {
    let pid = pid.to_string();
    let running = stat_field(&pid, 3).is_some_and(|state| state != "Z");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    running && String::from_utf8_lossy(&cmdline).contains(name)
}

/// The live processes of process group `pgid`.
fn group_members(pgid: u32) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let pid = pid.to_string();
            stat_field(&pid, 5).as_deref() == Some(pgid.to_string().as_str())
                && stat_field(&pid, 3).is_some_and(|s| s != "Z")
        })
        .collect()
}

fn kubectl_json(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--request-timeout=10s")
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("kubectl is needed by hack/local-up and this test");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("kubectl -o json")
}

/// What "up" promises: 3 initialized, Ready nodes and the seeded nodepool through the APIService.
fn check_up(run: &LocalUp) {
    let nodes = kubectl_json(&run.dir, &["get", "nodes"]);
    let nodes = nodes["items"].as_array().expect("items");
    assert_eq!(nodes.len(), 3, "nodes: {nodes:#?}");
    for node in nodes {
        let provider_id = node["spec"]["providerID"].as_str().unwrap_or_default();
        assert!(provider_id.starts_with("exoscale://"), "not initialized by sks-ccm: {node:#}");
        let conditions = node["status"]["conditions"].as_array().expect("conditions");
        assert!(conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"), "not Ready: {node:#}");
    }
    let pools = kubectl_json(&run.dir, &["get", "nodepools"]);
    let pools = pools["items"].as_array().expect("items");
    assert_eq!(pools.len(), 1, "nodepools: {pools:#?}");
    assert_eq!(pools[0]["metadata"]["name"], "workers");
    assert_eq!(pools[0]["spec"]["replicas"], 3);
}

fn names(pids: &[(String, u32)]) -> BTreeSet<&str> {
    pids.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn local_up_comes_up_stops_on_ctrl_c_and_runs_again() {
    let dir = TempDir::new("local-up");
    let all = BTreeSet::from(["local-up", "sks-zone", "kube-standin", "sks-apiserver", "sks-ccm"]);

    // First run: a fresh zone is seeded; Ctrl-C (SIGINT to the group) stops everything, status 130.
    let mut run = LocalUp::start(dir.path(), &[]);
    run.wait_line(UP, Duration::from_secs(90));
    let started = run.pids();
    assert_eq!(names(&started), all);
    assert_eq!(started[0], ("local-up".to_owned(), run.pgid));
    assert_eq!(started.iter().filter(|(n, _)| n == "sks-zone").count(), 2, "the zone runs twice: {started:?}");
    check_up(&run);
    run.signal("INT", true);
    let status = run.wait_exit(STOP_TIMEOUT);
    assert_eq!(status.code(), Some(130), "{}", run.report());
    assert!(run.stdout.text().ends_with("==> stopped"), "{}", run.report());
    run.assert_all_stopped(&started);
    drop(run);

    // Second run on the same directory: the same cluster comes back; SIGTERM to the script, status 143.
    let mut run = LocalUp::start(dir.path(), &[]);
    run.wait_line(UP, Duration::from_secs(90));
    let started = run.pids();
    assert_eq!(names(&started), all);
    check_up(&run);
    run.signal("TERM", false);
    let status = run.wait_exit(STOP_TIMEOUT);
    assert_eq!(status.code(), Some(143), "{}", run.report());
    run.assert_all_stopped(&started);
    drop(run);

    // Ctrl-C during startup: what was started so far stops, and the script does not go on.
    let mut run = LocalUp::start(dir.path(), &[]);
    run.wait_line("==> starting sks-apiserver", Duration::from_secs(60));
    let started = run.pids();
    run.signal("INT", true);
    let status = run.wait_exit(STOP_TIMEOUT);
    assert_eq!(status.code(), Some(130), "{}", run.report());
    assert!(!run.stdout.text().contains(UP), "{}", run.report());
    run.assert_all_stopped(&started);
}

#[test]
fn local_up_fails_clearly_when_nodes_never_become_ready() {
    let dir = TempDir::new("local-up-unready");
    // The seeded instances stay "starting" for an hour: no kubelet, no node.
    let mut run = LocalUp::start(dir.path(), &[("SKS_INSTANCE_BOOT_DELAY_MS", "3600000"), ("SKS_READY_TIMEOUT", "3")]);
    run.wait_line("==> waiting for 3 initialized, Ready nodes", Duration::from_secs(60));
    let started = run.pids();
    assert_eq!(names(&started), BTreeSet::from(["local-up", "sks-zone", "kube-standin", "sks-apiserver", "sks-ccm"]));
    let status = run.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", run.report());
    let stdout = run.stdout.text();
    let stderr = run.stderr.text();
    assert!(!stdout.contains(UP), "{}", run.report());
    assert!(stderr.contains("error: 0 of 3 nodes initialized and Ready"), "{}", run.report());
    let logs = dir.path().join("logs");
    assert!(stderr.contains(&format!("{}/ccm.log", logs.display())), "{}", run.report());
    assert!(stderr.contains(&format!("{}/zone.log", logs.display())), "{}", run.report());
    run.assert_all_stopped(&started);
}

/// Polls `check` every 250 ms until it answers `Ok`, at most `timeout`; panics with its last answer.
fn poll(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(()) => return,
            Err(why) if Instant::now() >= deadline => panic!("timed out after {timeout:?} waiting for {what}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Runs the first `kubectl` line hack/local-up printed that contains `needle`, as the user pastes it.
fn run_printed(run: &LocalUp, needle: &str) {
    let text = run.stdout.text();
    let line = text.lines().map(str::trim_start).find(|l| l.starts_with("kubectl ") && l.contains(needle));
    let line =
        line.unwrap_or_else(|| panic!("hack/local-up printed no kubectl line with {needle:?}\n{}", run.report()));
    let out = Command::new("bash")
        .args(["-c", line])
        .env("KUBECONFIG", run.dir.join("kubeconfig"))
        .output()
        .expect("running bash");
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The user story on the local stack, with the commands it prints: a
/// Deployment of 30 pods that 3 nodes cannot hold makes nodes appear, deleting
/// it makes them go (after the short delays given here).
#[test]
fn local_up_shows_nodepool_autoscaling() {
    let dir = TempDir::new("local-up-autoscaling");
    let delays = [("SKS_SCALE_DOWN_UNNEEDED_TIME", "2s"), ("SKS_SCALE_DOWN_DELAY_AFTER_ADD", "0s")];
    let mut run = LocalUp::start(dir.path(), &delays);
    run.wait_line(UP, Duration::from_secs(90));
    run.wait_line("Ctrl-C stops everything.", Duration::from_secs(10)); // the end of what it prints
    let started = run.pids();
    let replicas = |run: &LocalUp| kubectl_json(&run.dir, &["get", "np", "workers"])["spec"]["replicas"].as_i64();
    let running = |run: &LocalUp| {
        let pods = kubectl_json(&run.dir, &["get", "pods", "-l", "app=burst"]);
        pods["items"].as_array().into_iter().flatten().filter(|p| p["status"]["phase"] == "Running").count()
    };
    let nodes = |run: &LocalUp| kubectl_json(&run.dir, &["get", "nodes"])["items"].as_array().map_or(0, Vec::len);

    run_printed(&run, "patch np workers");
    run_printed(&run, "autoscaling-deployment.yaml");
    // 3 pods of 600m per standard.medium node: 30 pods need 10 nodes, the maximum.
    poll("30 running pods on 10 nodes", Duration::from_secs(150), || {
        let now = (replicas(&run), running(&run), nodes(&run));
        if now == (Some(10), 30, 10) { Ok(()) } else { Err(format!("(replicas, running, nodes) = {now:?}")) }
    });
    run_printed(&run, "delete deployment burst");
    poll("the nodepool back at its minimum", Duration::from_secs(150), || {
        let now = (replicas(&run), nodes(&run));
        if now == (Some(1), 1) { Ok(()) } else { Err(format!("(replicas, nodes) = {now:?}")) }
    });

    run.signal("INT", true);
    let status = run.wait_exit(STOP_TIMEOUT);
    assert_eq!(status.code(), Some(130), "{}", run.report());
    run.assert_all_stopped(&started);
}
