//! Where a started process logs: the test's own output at `warn` (the
//! default), or files a test reads once the process has stopped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How a started process logs.
#[derive(Debug, Clone, Default)]
pub enum Logs {
    /// At `warn`, to the test's stderr.
    #[default]
    Inherit,
    /// At `level` (a `RUST_LOG` filter), to `<dir>/<program>.log` (stderr) and
    /// `<dir>/<program>.stdout`, appended to, so a restart keeps what was logged before.
    Files {
        /// The directory of the files (created when missing).
        dir: PathBuf,
        /// The filter.
        level: String,
    },
}

impl Logs {
    /// Spawns `cmd`, which runs `program`, logging as said; returns it with the
    /// first line it printed (the address it reports), waiting at most 30 s.
    pub fn spawn(&self, cmd: &mut Command, program: &str) -> (Child, String) {
        match self {
            Logs::Inherit => {
                cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit());
                crate::spawn_reporting(cmd, program)
            }
            Logs::Files { dir, level } => {
                std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
                let open = |name: String| {
                    let path = dir.join(name);
                    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
                    file.unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
                };
                cmd.env("RUST_LOG", level).stderr(open(format!("{program}.log")));
                let stdout = Some(open(format!("{program}.stdout")));
                crate::spawn_reporting_copying(cmd, program, Duration::from_secs(30), stdout)
            }
        }
    }
}
