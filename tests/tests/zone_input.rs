//! Bad input gets the right 4xx with a message naming the field, and changes nothing.

use orchestrator::model::*;
use serde_json::Value;
use sks_e2e::zone::{TEST_KEY, Zone, ZoneOptions, signed_request};
use uuid::Uuid;

async fn snapshot(zone: &Zone) -> Vec<Value> {
    let mut out = Vec::new();
    for path in ["/sks-cluster", "/instance", "/instance-pool", "/load-balancer"] {
        let (status, body) = signed_request(&zone.endpoint(), "GET", path, None, None, 600).await;
        assert_eq!(status, 200);
        out.push(body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_rejected_and_change_nothing() {
    let zone = Zone::start(ZoneOptions { seed: true, ..Default::default() });
    let c = zone.client().await;
    let cluster = c.list_sks_clusters().await.unwrap().remove(0);
    let np = &cluster.nodepools[0];
    let medium = c.list_instance_types().await.unwrap().into_iter().find(|t| t.name() == "standard.medium").unwrap();
    let lb = c.create_load_balancer(&LoadBalancerSpec { name: Some("x".into()), ..Default::default() }).await.unwrap();
    let lb = lb.reference_id().unwrap();
    let before = snapshot(&zone).await;

    let nodepool_path = format!("/sks-cluster/{}/nodepool", cluster.id);
    let np_body = |size: &str, disk: &str| {
        format!(r#"{{"name":"np2","size":{size},"disk-size":{disk},"instance-type":{{"id":"{}"}}}}"#, medium.id)
    };
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        ("POST", "/load-balancer".into(), Some("{not json".into()), 400, "malformed JSON"),
        ("POST", "/load-balancer".into(), Some(r#"{"name": 42}"#.into()), 400, "name: must be a string"),
        ("POST", "/load-balancer".into(), Some(r#"{"description": "no name"}"#.into()), 400, "name: required"),
        ("POST", "/load-balancer".into(), Some(r#"{"name": "x", "nmae": "typo"}"#.into()), 400, "nmae: unknown field"),
        ("POST", nodepool_path.clone(), Some(np_body("3", "10")), 400, "disk-size: must be at least 20"),
        ("POST", nodepool_path.clone(), Some(np_body("3", "60000")), 400, "disk-size: must be at most 51200"),
        ("POST", nodepool_path.clone(), Some(np_body("\"3\"", "50")), 400, "size: must be an integer"),
        (
            "POST",
            nodepool_path.clone(),
            Some(format!(r#"{{"name":"np2","size":1,"disk-size":50,"instance-type":{{"id":"{}"}}}}"#, Uuid::new_v4())),
            400,
            "instance-type.id: unknown instance type",
        ),
        ("POST", nodepool_path.clone(), Some(np_body("1", "50").replace("np2", "workers")), 409, "already exists"),
        // References must name what exists; a whole object may stand for one, but not with unknown fields.
        (
            "POST",
            nodepool_path.clone(),
            Some(np_body("1", "50").replace(r#""name":"np2""#, &format!(r#""name":"np2","security-groups":[{{"id":"{}"}}]"#, Uuid::new_v4()))),
            400,
            "security-groups[0].id: unknown security group",
        ),
        (
            "POST",
            nodepool_path.clone(),
            Some(np_body("1", "50").replace(r#""name":"np2""#, &format!(r#""name":"np2","anti-affinity-groups":[{{"id":"{}"}}]"#, Uuid::new_v4()))),
            400,
            "anti-affinity-groups[0].id: unknown anti-affinity group",
        ),
        ("POST", nodepool_path.clone(), Some(np_body("1", "50").replace(r#"{"id""#, r#"{"autorized":true,"id""#)), 400, "instance-type.autorized: unknown field"),
        (
            "POST",
            "/instance".into(),
            Some(format!(r#"{{"disk-size":50,"instance-type":{{"id":"{}"}},"template":{{"id":"{}"}}}}"#, medium.id, Uuid::new_v4())),
            400,
            "template.id: unknown template",
        ),
        (
            "POST",
            format!("/load-balancer/{lb}/service"),
            Some(r#"{"name":"s","protocol":"sctp","strategy":"round-robin","port":80,"target-port":70000,"instance-pool":{"id":"00000000-0000-0000-0000-000000000000"},"healthcheck":{"mode":"tcp","port":80}}"#.into()),
            400,
            "protocol: must be one of [tcp, udp]",
        ),
        ("PUT", format!("/sks-cluster/{}/nodepool/{}:scale", cluster.id, np.id), Some(r#"{"size": -1}"#.into()), 400, "size: must be at least 0"),
        ("PUT", format!("/sks-cluster/{}/nodepool/{}:evict", cluster.id, np.id), Some(format!(r#"{{"instances":["{}"]}}"#, Uuid::new_v4())), 400, "is not a member"),
        ("POST", format!("/sks-cluster-kubeconfig/{}", cluster.id), Some(r#"{"user":"a","groups":[],"ttl":2592001}"#.into()), 400, "ttl: must be between"),
        ("PUT", format!("/sks-cluster/{}/upgrade", cluster.id), Some(r#"{"version":"9.9.9"}"#.into()), 400, "allowed: []"),
        ("GET", format!("/instance/{}", Uuid::new_v4()), None, 404, "not found"),
        ("GET", "/instance/not-a-uuid".into(), None, 404, "uuid"),
        ("DELETE", format!("/load-balancer/{}", Uuid::new_v4()), None, 404, "not found"),
        ("PUT", format!("/sks-cluster/{}/nodepool/{}:scale", cluster.id, Uuid::new_v4()), Some(r#"{"size": 1}"#.into()), 404, "SKS nodepool"),
        ("GET", "/instance?manager-type=foo".into(), None, 400, "query.manager-type: must be one of"),
        ("GET", format!("/sks-cluster/{}/authority/nope/cert", cluster.id), None, 400, "must be one of"),
        ("DELETE", format!("/load-balancer/{lb}/name"), None, 400, "must be one of"),
        ("GET", "/no-such-thing".into(), None, 404, "no such endpoint"),
    ];
    for (method, path, body, status, needle) in cases {
        let (got, answer) = signed_request(&zone.endpoint(), method, &path, body.as_deref(), None, 600).await;
        let message = answer["message"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
        assert!(message.contains(needle), "{method} {path}: message {message:?} lacks {needle:?}");
    }
    assert_eq!(snapshot(&zone).await, before, "a rejected request changed the state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_required_and_checked() {
    orchestrator::install_crypto_provider();
    let zone = Zone::start(ZoneOptions::default());
    let base = zone.endpoint();
    // GET /zone may come unsigned; nothing else may.
    let unsigned = reqwest::get(format!("{base}/zone")).await.unwrap();
    assert_eq!(unsigned.status(), 200);
    let unsigned = reqwest::get(format!("{base}/instance")).await.unwrap();
    assert_eq!(unsigned.status(), 403);
    let cases = [
        (Some((TEST_KEY, "wrong-secret")), 600, "signature mismatch"),
        (Some(("EXOunknown", "whatever")), 600, "unknown API key"),
        (None, -5, "expired"),
        (None, 7200, "in the future"),
    ];
    for (creds, expires_in, needle) in cases {
        let (status, body) = signed_request(&base, "GET", "/instance", None, creds, expires_in).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body} lacks {needle}");
    }
    // The query takes part in the signature: the same header on another query fails.
    let (status, _) = signed_request(&base, "GET", "/instance?manager-type=instance-pool", None, None, 600).await;
    assert_eq!(status, 200);
    // The dev credentials written at first start work too.
    let creds: Value =
        serde_json::from_slice(&std::fs::read(zone.state_dir().join("credentials.json")).unwrap()).unwrap();
    let dev = (creds["api_key"].as_str().unwrap(), creds["api_secret"].as_str().unwrap());
    let (status, _) = signed_request(&base, "GET", "/instance", None, Some(dev), 600).await;
    assert_eq!(status, 200);
}
