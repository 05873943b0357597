//! Converts the YAML spec to compact JSON at build time so the library only needs serde_json at runtime.

use std::path::PathBuf;

const SPEC: &str = "exoscale-api-v2.openapi.yaml";

fn main() {
    println!("cargo:rerun-if-changed={SPEC}");
    println!("cargo:rerun-if-changed=build.rs");

    let yaml = std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("reading {SPEC}: {e}"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("parsing {SPEC}: {e}"));
    let json = serde_json::to_string(&to_json(doc)).expect("serialising spec");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo")).join("spec.json");
    std::fs::write(&out, json).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// Converts by hand because JSON object keys must be strings, while YAML keys such as `200` or `true` may not be.
fn to_json(v: serde_yaml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    use serde_yaml::Value as Y;
    match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map_or(J::Null, J::Number)
            }
        }
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => J::Object(map.into_iter().map(|(k, v)| (key_string(k), to_json(v))).collect()),
        Y::Tagged(tagged) => to_json(tagged.value),
    }
}

fn key_string(k: serde_yaml::Value) -> String {
    match to_json(k) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}
