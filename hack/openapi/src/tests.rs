use serde_json::json;

use super::*;

const ID: &str = "4f0c2b6e-8a47-4c3e-9f1d-2a5b7c9d0e1f";
const ID2: &str = "0b7e5a3c-1d2f-4e6a-8b9c-0d1e2f3a4b5c";

fn spec() -> &'static Spec {
    Spec::embedded()
}

fn op_id(method: &str, path: &str) -> Option<String> {
    spec().operation(method, path).map(|op| op.id.to_owned())
}

fn v(path: &str, message: &str) -> Violation {
    violation(path, message)
}

fn sorted(mut v: Vec<Violation>) -> Vec<Violation> {
    v.sort_by(|a, b| (&a.path, &a.message).cmp(&(&b.path, &b.message)));
    v
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn valid_service() -> Value {
    json!({
        "name": "http",
        "instance-pool": {"id": ID},
        "protocol": "tcp",
        "strategy": "round-robin",
        "port": 80,
        "target-port": 8080,
        "healthcheck": {"mode": "tcp", "port": 8080, "interval": 10, "timeout": 2, "retries": 1},
    })
}

#[test]
fn embedded_spec_loads_with_all_operations() {
    let ops = spec().operations();
    assert!(ops.len() > 200, "only {} operations", ops.len());
    assert!(ops.contains(&("PUT".into(), "/instance-pool/{id}:scale".into(), "scale-instance-pool".into())));
}

#[test]
fn matches_paths_to_operations() {
    assert_eq!(op_id("PUT", &format!("/instance/{ID}:start")).as_deref(), Some("start-instance"));
    assert_eq!(op_id("GET", &format!("/instance/{ID}")).as_deref(), Some("get-instance"));
    assert_eq!(op_id("get", &format!("/instance/{ID}")).as_deref(), Some("get-instance"));
    assert_eq!(op_id("PUT", &format!("/sks-cluster/{ID}/nodepool/{ID2}:scale")).as_deref(), Some("scale-sks-nodepool"));
    assert_eq!(
        op_id("DELETE", &format!("/load-balancer/{ID}/service/{ID2}/description")).as_deref(),
        Some("reset-load-balancer-service-field")
    );
    assert_eq!(op_id("GET", "/sks-cluster-version").as_deref(), Some("list-sks-cluster-versions"));
    assert_eq!(
        op_id("GET", "/sks-cluster-version?include-deprecated=true").as_deref(),
        Some("list-sks-cluster-versions")
    );
    assert_eq!(op_id("GET", "/no-such-thing"), None);
    assert_eq!(op_id("PATCH", &format!("/instance/{ID}")), None);
    assert_eq!(op_id("GET", "/instance/"), None);
}

#[test]
fn extracts_and_decodes_path_params() {
    let op = spec().operation("PUT", &format!("/sks-cluster/{ID}/nodepool/{ID2}:scale")).unwrap();
    assert_eq!(op.path_template, "/sks-cluster/{id}/nodepool/{sks-nodepool-id}:scale");
    assert_eq!(op.method, "PUT");
    assert_eq!(op.path_params, vec![("id".to_owned(), ID.to_owned()), ("sks-nodepool-id".to_owned(), ID2.to_owned())]);

    let op = spec().operation("GET", "/instance/a%20b").unwrap();
    assert_eq!(op.path_params, vec![("id".to_owned(), "a b".to_owned())]);
}

#[test]
fn reports_invalid_path_params() {
    let op = spec().operation("GET", "/instance/not-a-uuid").unwrap();
    assert_eq!(op.id, "get-instance");
    assert_eq!(op.validate_path_params(), Err(vec![v("path.id", "must be a uuid, got \"not-a-uuid\"")]));
    assert_eq!(spec().operation("GET", &format!("/instance/{ID}")).unwrap().validate_path_params(), Ok(()));

    let op = spec().operation("DELETE", &format!("/load-balancer/{ID}/service/{ID2}/name")).unwrap();
    assert_eq!(op.validate_path_params(), Err(vec![v("path.field", "must be one of [description], got \"name\"")]));
}

#[test]
fn reports_invalid_query_params() {
    let op = spec().operation("GET", "/instance").unwrap();
    assert_eq!(op.id, "list-instances");
    assert_eq!(op.validate_query(&pairs(&[("manager-type", "instance-pool"), ("manager-id", ID)])), Ok(()));

    let errs = op.validate_query(&pairs(&[("manager-type", "foo"), ("bogus", "1")])).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.contains(&v("query.bogus", "unknown query parameter")));
    let enum_err = errs.iter().find(|e| e.path == "query.manager-type").expect("manager-type reported");
    assert!(enum_err.message.starts_with("must be one of [instance-pool"), "{enum_err}");
    assert!(enum_err.message.ends_with("got \"foo\""), "{enum_err}");
}

#[test]
fn add_service_reports_every_violation_with_its_path() {
    let op = spec().operation("POST", &format!("/load-balancer/{ID}/service")).unwrap();
    assert_eq!(op.id, "add-service-to-load-balancer");
    let mut body = valid_service();
    let obj = body.as_object_mut().unwrap();
    obj.remove("name");
    obj.insert("nmae".into(), json!("http"));
    obj.insert("protocol".into(), json!("sctp"));
    obj.insert("port".into(), json!("80"));
    obj["healthcheck"]["port"] = json!(70000);

    let errs = sorted(op.validate_request_body(Some(&body)).unwrap_err());
    assert_eq!(
        errs,
        vec![
            v("healthcheck.port", "must be at most 65535, got 70000"),
            v("name", "required field missing"),
            v("nmae", "unknown field"),
            v("port", "must be an integer, got string"),
            v("protocol", "must be one of [tcp, udp], got \"sctp\""),
        ]
    );
    assert_eq!(errs[0].to_string(), "healthcheck.port: must be at most 65535, got 70000");
}

#[test]
fn add_service_accepts_a_valid_body() {
    let op = spec().operation("POST", &format!("/load-balancer/{ID}/service")).unwrap();
    assert_eq!(op.validate_request_body(Some(&valid_service())), Ok(()));
    assert_eq!(op.validate_request_body(None), Err(vec![v("body", "required request body missing")]));
    assert_eq!(op.validate_request_body(Some(&json!([]))), Err(vec![v("body", "must be an object, got array")]));
}

#[test]
fn rejects_a_body_where_none_is_expected() {
    let op = spec().operation("GET", &format!("/instance/{ID}")).unwrap();
    assert_eq!(op.validate_request_body(None), Ok(()));
    assert_eq!(op.validate_request_body(Some(&json!({}))), Ok(()));
    assert_eq!(
        op.validate_request_body(Some(&json!({"a": 1}))),
        Err(vec![v("body", "operation takes no request body")])
    );
}

#[test]
fn get_load_balancer_response_is_strict() {
    let op = spec().operation("GET", &format!("/load-balancer/{ID}")).unwrap();
    assert_eq!(op.id, "get-load-balancer");
    let mut body = json!({
        "id": ID,
        "name": "lb",
        "state": "running",
        "ip": "192.0.2.10",
        "created-at": "2024-05-01T12:00:00.123Z",
        "labels": {"env": "test"},
        "services": [{"id": ID2, "name": "http", "protocol": "tcp", "port": 80, "target-port": 8080,
                      "instance-pool": {"id": ID}, "strategy": "round-robin", "state": "running",
                      "healthcheck": {"mode": "tcp", "port": 8080}}],
    });
    assert_eq!(op.validate_response_body(200, &body), Ok(()));

    body["nmae"] = json!("typo");
    body["services"][0]["protocol"] = json!("sctp");
    body["labels"]["n"] = json!(1);
    body["created-at"] = json!("yesterday");
    let errs = sorted(op.validate_response_body(200, &body).unwrap_err());
    assert_eq!(
        errs,
        vec![
            v("created-at", "must be an RFC 3339 date-time, got \"yesterday\""),
            v("labels.n", "must be a string, got integer"),
            v("nmae", "unknown field"),
            v("services[0].protocol", "must be one of [tcp, udp], got \"sctp\""),
        ]
    );
    assert_eq!(op.validate_response_body(599, &body), Err(vec![v("body", "no response defined for status 599")]));
}

/// A small hand-written spec for keywords the Exoscale spec does not exercise.
fn toy() -> Spec {
    Spec::from_value(json!({
        "openapi": "3.0.0",
        "paths": {
            "/thing/{id}": {
                "post": {
                    "operationId": "create-thing",
                    "parameters": [
                        {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1}},
                        {"in": "query", "name": "tag", "schema": {"type": "array", "items": {"type": "string"}}},
                        {"in": "query", "name": "dry", "required": true, "schema": {"type": "boolean"}},
                    ],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/thing"}}}},
                    "responses": {"default": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/thing"}}}}},
                },
            },
        },
        "components": {"schemas": {
            "base": {"type": "object", "properties": {"id": {"type": "string", "readOnly": true}, "secret": {"type": "string", "writeOnly": true}}},
            "thing": {
                "allOf": [{"$ref": "#/components/schemas/base"}, {"type": "object", "properties": {
                    "name": {"type": "string", "minLength": 2},
                    "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                    "when": {"type": "string", "format": "date-time", "nullable": true},
                    "addr": {"oneOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]},
                    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "maxItems": 2},
                    "self": {"$ref": "#/components/schemas/thing"},
                }, "required": ["id", "name"]}],
            },
            "loop-a": {"$ref": "#/components/schemas/loop-b"},
            "loop-b": {"$ref": "#/components/schemas/loop-a"},
        }},
    }))
}

#[test]
fn all_of_unions_known_fields_and_direction_flags_apply() {
    let spec = toy();
    let op = spec.operation("POST", "/thing/x").unwrap();
    assert_eq!(op.id, "create-thing");
    let ok = json!({"name": "ab", "ratio": 0.5, "when": null, "addr": "::1", "tags": ["a"], "secret": "s",
                    "self": {"id": "nested ids are references", "name": "cd"}});
    assert_eq!(op.validate_request_body(Some(&ok)), Ok(()));

    let bad = json!({"id": "x", "name": "a", "ratio": 0, "when": "2024-01-01 00:00", "addr": "nope",
                     "tags": ["a", "a", "b"], "extra": true, "self": {"extra": 1}});
    let errs = sorted(op.validate_request_body(Some(&bad)).unwrap_err());
    let expected = vec![
        v("addr", "must match one of the oneOf alternatives; closest: addr: must be an IPv4 address, got \"nope\""),
        v("extra", "unknown field"),
        v("id", "is read-only"),
        v("name", "must be at least 2 characters long, got 1"),
        v("ratio", "must be greater than 0, got 0"),
        v("self.extra", "unknown field"),
        v("self.name", "required field missing"),
        v("tags", "items must be unique, [1] duplicates [0]"),
        v("tags", "must have at most 2 items, got 3"),
        v("when", "must be an RFC 3339 date-time, got \"2024-01-01 00:00\""),
    ];
    assert_eq!(errs, expected);

    let errs = sorted(op.validate_response_body(200, &json!({"name": "ab", "secret": "s"})).unwrap_err());
    assert_eq!(errs, vec![v("id", "required field missing"), v("secret", "is write-only")]);
}

#[test]
fn query_params_are_coerced_before_validation() {
    let spec = toy();
    let op = spec.operation("POST", "/thing/x").unwrap();
    assert_eq!(op.validate_query(&pairs(&[("dry", "true"), ("limit", "5"), ("tag", "a"), ("tag", "b")])), Ok(()));
    let errs = sorted(op.validate_query(&pairs(&[("limit", "0"), ("limit", "x")])).unwrap_err());
    assert_eq!(
        errs,
        vec![
            v("query.dry", "required query parameter missing"),
            v("query.limit", "given 2 times, expected once"),
            v("query.limit", "must be at least 1, got 0"),
        ]
    );
    assert_eq!(
        op.validate_query(&pairs(&[("dry", "yes")])),
        Err(vec![v("query.dry", "must be a boolean, got \"yes\"")])
    );
}

#[test]
fn ref_cycles_terminate() {
    let spec = toy();
    let schema = json!({"$ref": "#/components/schemas/loop-a"});
    let errs = spec.check(&schema, &json!(1), Direction::Request, "body").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("too deep"));
}

#[test]
fn date_time_shapes() {
    for ok in ["2024-01-31T23:59:60Z", "2024-01-01t00:00:00.5+02:00", "2024-01-01T00:00:00-00:30"] {
        assert!(is_date_time(ok), "{ok}");
    }
    for bad in [
        "2024-01-01",
        "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00+0200",
    ] {
        assert!(!is_date_time(bad), "{bad}");
    }
}

#[test]
fn root_violations_are_labelled_body() {
    let spec = toy();
    let errs =
        spec.check(&json!({"type": "array", "items": {"type": "string"}}), &json!([1]), Direction::Response, "body");
    assert_eq!(errs, Err(vec![v("body[0]", "must be a string, got integer")]));
}

#[test]
fn every_template_routes_to_itself_and_validates_without_panicking() {
    for (method, template, id) in spec().operations() {
        let concrete: Vec<String> = template
            .split('/')
            .map(|seg| match Segment::parse(seg) {
                Segment::Literal(l) => l,
                Segment::Param { prefix, suffix, .. } => format!("{prefix}{ID}{suffix}"),
            })
            .collect();
        let op = spec().operation(&method, &concrete.join("/")).unwrap_or_else(|| panic!("{method} {template}"));
        assert_eq!(op.id, id, "{method} {template} routed to {}", op.path_template);
        let _ = op.validate_path_params();
        let _ = op.validate_query(&[]);
        let _ = op.validate_request_body(Some(&json!({"x": [1, null, {"y": "z"}]})));
        let _ = op.validate_response_body(200, &json!({}));
    }
}

/// An instance type as `GET /instance-type` lists it, which egoscale sends back whole.
fn listed_instance_type() -> Value {
    json!({"authorized": true, "cpus": 2, "family": "standard", "id": ID, "memory": 4294967296_i64,
           "size": "medium", "zones": ["ch-gva-2", "de-fra-1"]})
}

#[test]
fn references_accept_the_properties_of_the_resource_they_name() {
    let op = spec().operation("POST", &format!("/sks-cluster/{ID}/nodepool")).unwrap();
    let security_group = json!({"id": ID2, "name": "default", "description": "Default Security Group",
        "rules": [{"id": ID, "flow-direction": "ingress", "protocol": "tcp", "start-port": 30000, "end-port": 32767,
                   "network": "0.0.0.0/0", "description": "NodePort services"},
                  {"id": ID2, "flow-direction": "ingress", "protocol": "tcp", "start-port": 10250, "end-port": 10250,
                   "security-group": {"id": ID2, "name": "default"}}]});
    let body = json!({"name": "np", "size": 2, "disk-size": 50, "instance-type": listed_instance_type(),
        "security-groups": [security_group], "public-ip-assignment": "inet4",
        "kubelet-image-gc": {"high-threshold": 85, "low-threshold": 80, "min-age": "2m"}});
    assert_eq!(op.validate_request_body(Some(&body)), Ok(()));

    // Still checked against the referenced schema, and still closed to names neither declares.
    let mut bad = body.clone();
    bad["instance-type"]["cpus"] = json!("2");
    bad["instance-type"]["autorized"] = json!(true);
    bad["instance-type"]["size"] = json!("gigantic");
    bad["security-groups"][0]["rules"][0]["protocol"] = json!("sctp");
    let errs = sorted(op.validate_request_body(Some(&bad)).unwrap_err());
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["instance-type.autorized", "instance-type.cpus", "instance-type.size", "security-groups[0].rules[0].protocol"],
        "{errs:?}"
    );
    assert_eq!(errs[0].message, "unknown field");
    assert_eq!(errs[1].message, "must be an integer, got string");
}

#[test]
fn whole_templates_and_nulls_of_nullable_fields_are_accepted() {
    // `exo compute instance create` names the template as `&Template{ID: ...}`: Go sends its zero time too.
    let op = spec().operation("POST", "/instance").unwrap();
    let body = json!({"disk-size": 50, "instance-type": listed_instance_type(), "name": "vm",
        "public-ip-assignment": "inet4", "secureboot-enabled": false, "tpm-enabled": false,
        "ssh-keys": [{"name": "ops"}], "template": {"created-at": "0001-01-01T00:00:00Z", "id": ID2}});
    assert_eq!(op.validate_request_body(Some(&body)), Ok(()));

    // Fields egoscale sends as `null` when unset are nullable in the spec.
    let op = spec().operation("PUT", &format!("/sks-cluster/{ID}/nodepool/{ID2}")).unwrap();
    let body = json!({"deploy-target": null, "description": "workers", "nvidia-mig-profiles": null});
    assert_eq!(op.validate_request_body(Some(&body)), Ok(()));
    let body = json!({"deploy-target": null, "labels": null});
    assert_eq!(op.validate_request_body(Some(&body)), Err(vec![v("labels", "must be an object, got null")]));
}

#[test]
fn lists_the_properties_a_schema_declares() {
    let props = spec().schema_properties("load-balancer").unwrap();
    assert_eq!(props, ["created-at", "description", "id", "ip", "labels", "name", "services", "state"]);
    assert_eq!(spec().schema_properties("no-such-schema"), None);
}
