use sks_e2e::apiserver::ApiServer;
use sks_e2e::zone::{Zone, ZoneOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
    let c = zone.client().await;
    let cluster = c.list_sks_clusters().await.unwrap().remove(0);
    let api = ApiServer::start(&zone, &cluster.id.to_string(), &["--refresh-interval", "1s"]);
    let k = api.kubectl();
    std::thread::sleep(std::time::Duration::from_secs(2));
    for args in [
        vec!["get", "np"],
        vec!["get", "np", "-o", "wide", "--show-labels"],
        vec!["get", "np", "workers", "-o", "yaml"],
        vec!["explain", "nodepool.spec.taints"],
        vec!["api-resources"],
    ] {
        let out = k.run(&args);
        println!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
