//! Which controllers run (`--controllers`), and running them while this
//! replica leads: all start when it becomes the leader and stop at once when
//! it is not any more.

use std::collections::BTreeSet;
use std::sync::Arc;

use sks_lease as leader;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::csr::controller::Csrs;
use crate::lb;
use crate::node::{self, Nodes};

/// Node initialization: providerID, labels, taints, addresses, and their drift.
pub const CLOUD_NODE: &str = "cloud-node";
/// Node lifecycle: delete Nodes whose instance is gone, taint stopped ones.
pub const CLOUD_NODE_LIFECYCLE: &str = "cloud-node-lifecycle";
/// Auto-healing: reboot, then replace, instances of Nodes that stay NotReady.
pub const NODE_AUTO_HEAL: &str = "node-auto-heal";
/// Kubelet serving CSR approval.
pub const NODE_CSR_APPROVAL: &str = "node-csr-approval";
/// LoadBalancer Services as NLBs.
pub const SERVICE: &str = "service";
/// Every controller, by its `--controllers` name.
pub const NAMES: [&str; 5] = [CLOUD_NODE, CLOUD_NODE_LIFECYCLE, NODE_AUTO_HEAL, NODE_CSR_APPROVAL, SERVICE];

/// The controllers a `--controllers` list turns on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection(BTreeSet<&'static str>);

impl Selection {
    /// `*` turns every controller on, a name one; `-name` turns it off whatever
    /// else the list says. An unknown name is an error.
    pub fn parse(list: &[String]) -> Result<Selection, String> {
        for item in list {
            let name = item.trim_start_matches('-');
            if name != "*" && !NAMES.contains(&name) {
                return Err(format!("unknown controller {name:?} (known: {NAMES:?})"));
            }
        }
        let on = |name: &str| {
            !list.iter().any(|c| c.strip_prefix('-') == Some(name)) && list.iter().any(|c| c == "*" || c == name)
        };
        Ok(Selection(NAMES.into_iter().filter(|n| on(n)).collect()))
    }

    /// Whether controller `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// What runs, and with which settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The node controller's (it runs if any of its steps does).
    pub nodes: node::Config,
    /// Whether CSR approval runs.
    pub csr_approval: bool,
    /// The Service controller's, if it runs.
    pub service: Option<lb::controller::Config>,
    /// Concurrent reconciles of CSR approval.
    pub workers: u16,
}

/// The selected controllers, built once: their queues and memory outlive a
/// loss of leadership.
pub struct Controllers {
    ctx: Arc<Context>,
    nodes: Option<Arc<Nodes>>,
    csrs: Option<Arc<Csrs>>,
    service: Option<lb::controller::Config>,
}

impl Controllers {
    /// The controllers `config` selects, sharing `ctx`.
    pub fn new(ctx: Arc<Context>, config: Config) -> Self {
        let nodes = config.nodes.steps.any().then(|| Arc::new(Nodes::new(ctx.clone(), config.nodes)));
        let csrs = config.csr_approval.then(|| Arc::new(Csrs::new(ctx.clone(), config.workers)));
        Controllers { ctx, nodes, csrs, service: config.service }
    }

    fn start(&self) -> Vec<JoinHandle<()>> {
        let mut running = Vec::new();
        if let Some(nodes) = &self.nodes {
            running.push(tokio::spawn(nodes.clone().run()));
        }
        if let Some(csrs) = &self.csrs {
            running.push(tokio::spawn(csrs.clone().run()));
        }
        if let Some(config) = self.service {
            running.push(tokio::spawn(lb::controller::run(self.ctx.clone(), config)));
        }
        running
    }

    /// Runs the controllers while this replica leads (always, without an
    /// `election`) until `shutdown`, then gives the lease up.
    pub async fn run(&self, election: Option<leader::Config>, shutdown: impl Future<Output = ()>) {
        // Without an election this replica always leads; the sender lives as long as the loop.
        let (_always, mut leading) = tokio::sync::watch::channel(election.is_none());
        let election = election.map(|cfg| leader::Election::start(self.ctx.client.clone(), cfg));
        if let Some(e) = &election {
            leading = e.leading();
        }
        tokio::pin!(shutdown);
        let mut running: Vec<JoinHandle<()>> = Vec::new();
        loop {
            let lead = *leading.borrow_and_update();
            if lead && running.is_empty() {
                running = self.start();
                tracing::info!(controllers = running.len(), "controllers started");
            } else if !lead && !running.is_empty() {
                // Losing the lease stops every action at once.
                for task in running.drain(..) {
                    task.abort();
                }
                tracing::warn!("controllers stopped: not the leader");
            }
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { break },
                () = &mut shutdown => break,
            }
        }
        for task in running {
            task.abort();
        }
        if let Some(e) = election {
            e.resign().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &str) -> Result<Vec<&'static str>, String> {
        let list: Vec<String> = list.split(',').map(str::to_owned).collect();
        Selection::parse(&list).map(|s| NAMES.into_iter().filter(|n| s.runs(n)).collect())
    }

    #[test]
    fn every_controller_can_be_turned_off_alone() {
        assert_eq!(parse("*").unwrap(), NAMES);
        for name in NAMES {
            let rest: Vec<&str> = NAMES.into_iter().filter(|n| *n != name).collect();
            assert_eq!(parse(&format!("*,-{name}")).unwrap(), rest, "-{name}");
            assert_eq!(parse(&format!("-{name},*")).unwrap(), rest, "order does not matter: -{name}");
            assert_eq!(parse(name).unwrap(), [name], "only {name}");
        }
        assert_eq!(parse("cloud-node,-cloud-node").unwrap(), Vec::<&str>::new(), "off wins");
        assert_eq!(
            parse("").unwrap_err(),
            "unknown controller \"\" (known: [\"cloud-node\", \"cloud-node-lifecycle\", \"node-auto-heal\", \"node-csr-approval\", \"service\"])"
        );
        assert!(parse("*,-route").unwrap_err().contains("\"route\""));
    }
}
