//! Prints what a zone holds: clusters, nodepools and their instances, NLBs.
//! Reads the Exoscale CCM's variables (`EXOSCALE_API_ENDPOINT`, `EXOSCALE_API_ZONE`,
//! `EXOSCALE_API_KEY`/`SECRET` or `EXOSCALE_API_CREDENTIALS_FILE`).
//! With `--wait-running N`, first waits until N instances are running.

use std::time::{Duration, Instant};

use orchestrator::model::{InstanceFilter, InstanceState, ManagerType};
use orchestrator::{Client, ClientConfig, CredentialSource};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let wait_for: Option<usize> =
        args.iter().position(|a| a == "--wait-running").and_then(|i| args.get(i + 1)?.parse().ok());
    let client = Client::connect(ClientConfig::from_env(), CredentialSource::from_env()?, None).await?;
    println!("zone endpoint: {}", client.endpoint());

    if let Some(n) = wait_for {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let running = client.list_instances(&InstanceFilter::default()).await?;
            let running = running.iter().filter(|i| i.state == InstanceState::Running).count();
            if running >= n {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("only {running} of {n} instances running after 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    for cluster in client.list_sks_clusters().await? {
        println!(
            "cluster {} ({}): version {}, {}, {}, endpoint {}",
            cluster.spec.name.as_deref().unwrap_or("-"),
            cluster.id,
            cluster.version,
            cluster.level,
            cluster.state,
            cluster.endpoint.as_deref().unwrap_or("-")
        );
        for np in &cluster.nodepools {
            println!(
                "  nodepool {} ({}): size {}, {}, version {}",
                np.spec.name.as_deref().unwrap_or("-"),
                np.id,
                np.size,
                np.state,
                np.version.as_deref().unwrap_or("-")
            );
            let Some(pool) = np.instance_pool else { continue };
            let filter = InstanceFilter {
                manager_id: Some(pool.id),
                manager_type: Some(ManagerType::InstancePool),
                ..Default::default()
            };
            for i in client.list_instances(&filter).await? {
                let ip = i.public_ip.map(|ip| ip.to_string()).unwrap_or_default();
                println!("    instance {:<18} {:<9} {:<15} {}", i.name, i.state.as_str(), ip, i.id);
            }
        }
    }
    let nlbs = client.list_load_balancers().await?;
    println!("{} network load balancer(s)", nlbs.len());
    Ok(())
}
