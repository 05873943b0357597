//! What every scenario hands back: tables for the terminal and one JSON
//! document with the figures, the parameters, the machine and the revision.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

/// A plain-text table.
#[derive(Debug, Clone)]
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with a title and column headers.
    pub fn new(title: &str, headers: &[&str]) -> Self {
        Table {
            title: title.to_owned(),
            headers: headers.iter().map(std::string::ToString::to_string).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "row width of table {:?}", self.title);
        self.rows.push(cells);
    }

    /// The table with columns padded to their widest cell; numbers right-aligned.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(std::string::String::len).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        // A column whose cells all start with a digit is right-aligned, header included.
        let numeric = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '-');
        let right: Vec<bool> = (0..widths.len())
            .map(|i| i > 0 && !self.rows.is_empty() && self.rows.iter().all(|r| r.get(i).is_some_and(|c| numeric(c))))
            .collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                let sep = if i == 0 { "" } else { "  " };
                if right[i] {
                    let _ = write!(out, "{sep}{cell:>w$}");
                } else {
                    let _ = write!(out, "{sep}{cell:<w$}");
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = format!("{}\n{}\n", self.title, line(&self.headers));
        let _ = writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        for row in &self.rows {
            let _ = writeln!(out, "{}", line(row));
        }
        out
    }
}

/// The outcome of one scenario run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name, e.g. `api`.
    pub scenario: &'static str,
    /// The parameters it ran with.
    pub parameters: Value,
    /// The figures.
    pub results: Value,
    /// Tables for the terminal.
    pub tables: Vec<Table>,
}

impl Report {
    /// The full JSON document: figures plus where and when they were measured.
    pub fn document(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "timestamp": jiff::Timestamp::now().to_string(),
            "git_revision": git_revision(),
            "git_dirty": git_dirty(),
            "bin_dir": std::env::var("SKS_BIN_DIR").ok(),
            "binaries": binaries(),
            "machine": machine(),
            "parameters": self.parameters,
            "results": self.results,
        })
    }

    /// Prints the tables to stdout.
    pub fn print(&self) {
        for table in &self.tables {
            println!("{}", table.render());
        }
    }

    /// Writes the JSON document to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.document())? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// `git rev-parse HEAD`, or "unknown" outside a checkout.
pub fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// When each binary under test was built (its modification time): the git
/// revision is the checkout's, which may have moved since the build.
pub fn binaries() -> Value {
    let Ok(dir) = std::env::var("SKS_BIN_DIR") else { return Value::Null };
    let mut out = serde_json::Map::new();
    for name in ["sks-zone", "sks-apiserver", "sks-ccm"] {
        let modified = std::fs::metadata(Path::new(&dir).join(name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| jiff::Timestamp::try_from(t).ok())
            .map(|t| t.to_string());
        if let Some(modified) = modified {
            out.insert(name.to_owned(), json!({"modified": modified}));
        }
    }
    Value::Object(out)
}

/// Whether tracked files differ from HEAD (`None` outside a checkout): the
/// binaries may then not be HEAD's.
pub fn git_dirty() -> Option<bool> {
    std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty())
}

/// CPUs, memory, CPU model and kernel of this machine.
pub fn machine() -> Value {
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/version").map(|v| v.trim().to_owned()).ok();
    // Other work on the machine skews every figure; the load average at the end of the run shows it.
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).filter_map(|v| v.parse::<f64>().ok()).collect::<Vec<_>>());
    json!({
        "nproc": nproc,
        "mem_total_kib": mem_total_kib,
        "mem_total_gib": mem_total_kib.map(|k| (k as f64 / 1048576.0 * 10.0).round() / 10.0),
        "cpu_model": cpu_model,
        "kernel": kernel,
        "loadavg_1_5_15": loadavg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new("T", &["name", "n"]);
        t.row(vec!["a".into(), "10".into()]);
        t.row(vec!["long".into(), "2".into()]);
        assert_eq!(t.render(), "T\nname   n\n----  --\na     10\nlong   2\n");
    }

    #[test]
    fn machine_info_is_read() {
        let m = machine();
        assert!(m["nproc"].as_u64().unwrap() >= 1);
        assert!(m["mem_total_kib"].as_u64().unwrap() > 0);
    }
}
