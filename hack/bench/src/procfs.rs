//! Memory, CPU time and sockets of processes, from /proc.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::Serialize;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// A process observed through /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Its id.
    pub pid: u32,
}

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Current resident set (VmRSS), MiB.
    pub rss_mib: f64,
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn cmdline(pid: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
        })
        .unwrap_or_default()
}

impl Proc {
    /// This process.
    pub fn current() -> Self {
        Proc { pid: std::process::id() }
    }

    /// The process `name` this one started, directly or through another (the real
    /// kube-apiserver runs under `kube-standin --kube-assets`), whose arguments
    /// contain `marker`.
    pub fn find_child(name: &str, marker: &str) -> anyhow::Result<Self> {
        let me = std::process::id().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").context("reading /proc")? {
            let file_name = entry?.file_name();
            let pid = file_name.to_string_lossy();
            if !pid.bytes().all(|b| b.is_ascii_digit()) || !descends_from(&pid, &me) {
                continue;
            }
            let args = cmdline(&pid);
            let is_it = args.first().is_some_and(|a| PathBuf::from(a).file_name().is_some_and(|f| f == name));
            if is_it && args.iter().any(|a| a.contains(marker)) {
                found.push(pid.parse()?);
            }
        }
        match found.as_slice() {
            [pid] => Ok(Proc { pid: *pid }),
            [] => bail!("no process {name} started by this one with an argument containing {marker:?}"),
            many => bail!("several processes {name} match {marker:?}: {many:?}"),
        }
    }

    /// VmRSS and VmHWM.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("reading /proc/{}/status", self.pid))?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("{name} in /proc/{}/status", self.pid))?;
            Ok((kib as f64 / 1024.0 * 10.0).round() / 10.0)
        };
        Ok(Memory { rss_mib: field("VmRSS:")?, peak_rss_mib: field("VmHWM:")? })
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let fields = stat_fields(&self.pid.to_string()).with_context(|| format!("reading /proc/{}/stat", self.pid))?;
        // utime and stime are fields 14 and 15 of stat(5); the slice starts at field 3.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).context("utime/stime");
        Ok((ticks(11)? + ticks(12)?) as f64 / USER_HZ)
    }

    /// Number of open sockets (TCP connections, listeners, pipes excluded).
    pub fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .count()
        })
    }
}

/// The highest peak RSS among readings, MiB.
pub fn peak_mib(readings: &[Memory]) -> f64 {
    readings.iter().map(|m| m.peak_rss_mib).fold(0.0, f64::max)
}

/// Busy CPU time of the whole machine so far (every CPU, all but idle and iowait), in seconds.
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let ticks: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    busy as f64 / USER_HZ
}

/// CPU use of a set of processes, and of the whole machine, over a window, in
/// cores (1.0 = one core busy).
#[derive(Debug, Clone)]
pub struct CpuMeter {
    procs: Vec<(Proc, f64)>,
    machine: f64,
    started: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring `procs`.
    pub fn start(procs: &[Proc]) -> Self {
        CpuMeter {
            procs: procs.iter().map(|p| (*p, p.cpu_seconds().unwrap_or(0.0))).collect(),
            machine: machine_busy_seconds(),
            started: std::time::Instant::now(),
        }
    }

    /// Cores used by each process since the start, in the order given.
    pub fn cores(&self) -> Vec<f64> {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        self.procs.iter().map(|(p, before)| round2((p.cpu_seconds().unwrap_or(*before) - before) / wall)).collect()
    }

    /// Cores the whole machine used since the start (the measured processes included).
    pub fn machine_cores(&self) -> f64 {
        round2((machine_busy_seconds() - self.machine) / self.started.elapsed().as_secs_f64().max(1e-9))
    }
}

/// Waits until the machine is nearly idle (busy below `max_cores` over a 2 s
/// sample) or `limit` passed; returns the seconds waited and the last sample.
///
/// The CPUs are shared (builds, tests of others): measuring while they are busy
/// measures them too.
pub async fn wait_quiet(limit: std::time::Duration, max_cores: f64) -> (f64, f64) {
    let started = std::time::Instant::now();
    loop {
        let before = machine_busy_seconds();
        let t = std::time::Instant::now();
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let cores = round2((machine_busy_seconds() - before) / t.elapsed().as_secs_f64());
        if cores <= max_cores || started.elapsed() >= limit {
            return (round2(started.elapsed().as_secs_f64()), cores);
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Whether `pid`'s parent chain reaches `ancestor`.
fn descends_from(pid: &str, ancestor: &str) -> bool {
    let mut current = pid.to_owned();
    for _ in 0..64 {
        match stat_fields(&current).and_then(|f| f.get(1).cloned()) {
            Some(parent) if parent == ancestor => return true,
            Some(parent) if parent != "0" && parent != "1" => current = parent,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = Proc::current();
        let m = me.memory().unwrap();
        assert!(m.rss_mib > 0.0 && m.peak_rss_mib >= m.rss_mib);
        assert!(me.cpu_seconds().unwrap() >= 0.0);
        assert!(machine_busy_seconds() > 0.0);
    }
}
