//! The Exoscale API v2 OpenAPI 3.0 spec, embedded at build time, and a validator for requests and
//! responses against it.
//!
//! The validator implements the schema subset the spec uses and is deliberately strict: an object
//! schema that lists `properties` without `additionalProperties` rejects fields it does not list, so
//! typos in field names surface as violations instead of being silently dropped.
//!
//! Three deliberate relaxations. `readOnly` is only enforced for top-level request fields (the spec
//! reuses full resource schemas as references: a request names an existing Instance Pool as
//! `"instance-pool": {"id": ...}` even though `id` is read-only). A `<kind>-ref` schema also accepts
//! the properties of `<kind>`, because the official client sends whole objects as references and the
//! real API takes them (`widen_references`). And `pattern` is ignored because the crate carries no
//! regex engine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use serde_json::{Map, Value};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/// Bounds recursion through `$ref` cycles that never descend into the value (`a -> b -> a`).
const MAX_DEPTH: usize = 512;

/// Bounds `$ref` chains followed when looking up flags such as `nullable` or `readOnly`.
const MAX_REF_HOPS: usize = 32;

/// A parsed OpenAPI document with an index of its operations by path template.
pub struct Spec {
    doc: Value,
    routes: Vec<Route>,
}

struct Route {
    /// Upper-case HTTP method.
    method: String,
    /// Lower-case key of the operation inside the path item.
    key: &'static str,
    template: String,
    segments: Vec<Segment>,
    /// Tie-breaker between overlapping templates: the most specific one wins.
    literal_len: usize,
}

enum Segment {
    Literal(String),
    Param { prefix: String, name: String, suffix: String },
}

impl Spec {
    /// The Exoscale spec embedded at build time, parsed on first use and shared afterwards.
    pub fn embedded() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| {
            let doc = serde_json::from_str(include_str!(concat!(env!("OUT_DIR"), "/spec.json")))
                .expect("the build script writes valid JSON");
            Spec::from_value(doc)
        })
    }

    /// Indexes an already parsed OpenAPI 3.0 document (references widened: [`widen_references`]).
    pub fn from_value(mut doc: Value) -> Spec {
        widen_references(&mut doc);
        let mut routes = Vec::new();
        if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
            for (template, item) in paths {
                for key in METHODS {
                    if item.get(key).is_some_and(Value::is_object) {
                        routes.push(Route::new(template, key));
                    }
                }
            }
        }
        // Sorted so that ties and `operations()` do not depend on serde_json's map ordering feature.
        routes.sort_by(|a, b| (a.template.as_str(), a.key).cmp(&(b.template.as_str(), b.key)));
        Spec { doc, routes }
    }

    /// Finds the operation for METHOD + path relative to /v2 (e.g. "PUT", "/instance-pool/4f0c...:scale").
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let raw: Vec<&str> = path.split('/').collect();
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        for route in &self.routes {
            if !route.method.eq_ignore_ascii_case(method) || route.segments.len() != raw.len() {
                continue;
            }
            let Some(params) = route.matches(&raw) else { continue };
            if best.as_ref().is_none_or(|(b, _)| route.literal_len > b.literal_len) {
                best = Some((route, params));
            }
        }
        let (route, path_params) = best?;
        let path_item = &self.doc["paths"][route.template.as_str()];
        let op = &path_item[route.key];
        Some(Operation {
            id: op["operationId"].as_str().unwrap_or(""),
            method: route.method.clone(),
            path_template: &route.template,
            path_params,
            spec: self,
            op,
            path_item,
        })
    }

    /// All (METHOD, path template, operationId) triples, for coverage reporting.
    pub fn operations(&self) -> Vec<(String, String, String)> {
        self.routes
            .iter()
            .map(|r| {
                let id = self.doc["paths"][r.template.as_str()][r.key]["operationId"].as_str().unwrap_or("");
                (r.method.clone(), r.template.clone(), id.to_owned())
            })
            .collect()
    }

    /// The property names `components/schemas/<name>` declares (with its `allOf`
    /// members), sorted; `None` when there is no such schema.
    pub fn schema_properties(&self, name: &str) -> Option<Vec<String>> {
        let schema = self.doc.get("components")?.get("schemas")?.get(name)?;
        let mut acc = Members::default();
        self.collect_members(schema, &mut acc, 0);
        Some(acc.names.keys().map(|k| (*k).to_owned()).collect())
    }

    /// Gathers property names across a schema, its `$ref` target and its `allOf` members.
    fn collect_members<'s>(&'s self, schema: &'s Value, acc: &mut Members<'s>, depth: usize) {
        if depth > MAX_REF_HOPS {
            return;
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            acc.has_props = true;
            for (name, p) in props {
                acc.names.entry(name.as_str()).or_insert(p);
            }
        }
        if schema.get("additionalProperties").is_some_and(|a| a == &Value::Bool(true) || a.is_object()) {
            acc.open = true;
        }
        if let Some(target) = schema.get("$ref").and_then(Value::as_str).and_then(|r| self.pointer(r)) {
            self.collect_members(target, acc, depth + 1);
        }
        for m in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.collect_members(m, acc, depth + 1);
        }
    }

    fn pointer(&self, reference: &str) -> Option<&Value> {
        self.doc.pointer(reference.strip_prefix('#')?)
    }

    /// Follows `$ref` until a concrete object; an unresolvable reference yields the last object reached.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..MAX_REF_HOPS {
            match v.get("$ref").and_then(Value::as_str).and_then(|r| self.pointer(r)) {
                Some(target) => v = target,
                None => break,
            }
        }
        v
    }

    /// Whether `key: true` is set on the schema or anywhere along its `$ref` chain.
    fn flag<'a>(&'a self, mut schema: &'a Value, key: &str) -> bool {
        for _ in 0..MAX_REF_HOPS {
            if schema.get(key) == Some(&Value::Bool(true)) {
                return true;
            }
            match schema.get("$ref").and_then(Value::as_str).and_then(|r| self.pointer(r)) {
                Some(target) => schema = target,
                None => return false,
            }
        }
        false
    }

    fn check(&self, schema: &Value, value: &Value, dir: Direction, root: &str) -> Result<(), Vec<Violation>> {
        let mut v = Validator { spec: self, dir, root, out: Vec::new() };
        v.validate(schema, value, "", 0, None);
        if v.out.is_empty() { Ok(()) } else { Err(v.out) }
    }
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec").field("operations", &self.routes.len()).finish_non_exhaustive()
    }
}

impl Route {
    fn new(template: &str, key: &'static str) -> Route {
        let segments: Vec<Segment> = template.split('/').map(Segment::parse).collect();
        let literal_len = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.len(),
                Segment::Param { prefix, suffix, .. } => prefix.len() + suffix.len(),
            })
            .sum();
        Route { method: key.to_ascii_uppercase(), key, template: template.to_owned(), segments, literal_len }
    }

    fn matches(&self, raw: &[&str]) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        for (seg, raw) in self.segments.iter().zip(raw) {
            match seg {
                Segment::Literal(l) if l == raw => {}
                Segment::Literal(_) => return None,
                Segment::Param { prefix, name, suffix } => {
                    let value = raw.strip_prefix(prefix.as_str())?.strip_suffix(suffix.as_str())?;
                    if value.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), percent_decode(value)));
                }
            }
        }
        Some(params)
    }
}

impl Segment {
    /// Supports one parameter per segment, with optional literal text around it (`{id}:scale`).
    fn parse(seg: &str) -> Segment {
        if let Some((prefix, rest)) = seg.split_once('{')
            && let Some((name, suffix)) = rest.split_once('}')
        {
            return Segment::Param { prefix: prefix.to_owned(), name: name.to_owned(), suffix: suffix.to_owned() };
        }
        Segment::Literal(seg.to_owned())
    }
}

/// Lets every `<kind>-ref` schema accept the properties `<kind>` declares.
///
/// The official client (egoscale v3) types each reference as the whole
/// resource and sends whatever it holds: `exo compute sks nodepool add` puts
/// the instance type it listed (`authorized`, `cpus`, `zones`...) where the
/// spec names an `instance-type-ref` of only `id`, and the real API takes it.
/// So wherever a reference may appear, the referenced schema's properties are
/// accepted and checked against that schema (types, enums, ranges); a name
/// neither declares is still an unknown field.
fn widen_references(doc: &mut Value) {
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    let widened: Vec<(String, Map<String, Value>)> = schemas
        .iter()
        .filter_map(|(name, reference)| {
            let own = reference.get("properties")?.as_object()?;
            let mut properties = schemas.get(name.strip_suffix("-ref")?)?.get("properties")?.as_object()?.clone();
            properties.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            Some((name.clone(), properties))
        })
        .collect();
    for (name, properties) in widened {
        schemas[&name]["properties"] = Value::Object(properties);
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One operation of the spec, matched against a concrete path.
pub struct Operation<'a> {
    /// operationId, e.g. "scale-instance-pool".
    pub id: &'a str,
    /// Upper-case HTTP method.
    pub method: String,
    /// Path template relative to /v2, e.g. "/instance-pool/{id}:scale".
    pub path_template: &'a str,
    /// Path parameter name -> percent-decoded value taken from the concrete path.
    pub path_params: Vec<(String, String)>,
    spec: &'a Spec,
    op: &'a Value,
    path_item: &'a Value,
}

impl fmt::Debug for Operation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("path_template", &self.path_template)
            .field("path_params", &self.path_params)
            .finish_non_exhaustive()
    }
}

impl<'a> Operation<'a> {
    /// Checks path parameters against their schemas (uuid format, enums such as `{field}`).
    pub fn validate_path_params(&self) -> Result<(), Vec<Violation>> {
        let mut out = Vec::new();
        for p in self.parameters("path") {
            let name = p["name"].as_str().unwrap_or("");
            match self.path_params.iter().find(|(n, _)| n == name) {
                Some((_, raw)) => self.check_param(p, &[raw.as_str()], &format!("path.{name}"), &mut out),
                None if p["required"] == true => {
                    out.push(violation(format!("path.{name}"), "required path parameter missing"));
                }
                None => {}
            }
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// Checks query parameters: unknown names, missing required ones, types, enums and formats.
    pub fn validate_query(&self, pairs: &[(String, String)]) -> Result<(), Vec<Violation>> {
        let params = self.parameters("query");
        let mut out = Vec::new();
        let mut unknown = BTreeSet::new();
        for (name, _) in pairs {
            if !params.iter().any(|p| p["name"] == name.as_str()) && unknown.insert(name.as_str()) {
                out.push(violation(format!("query.{name}"), "unknown query parameter"));
            }
        }
        for p in params {
            let name = p["name"].as_str().unwrap_or("");
            let values: Vec<&str> = pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
            if values.is_empty() {
                if p["required"] == true {
                    out.push(violation(format!("query.{name}"), "required query parameter missing"));
                }
                continue;
            }
            self.check_param(p, &values, &format!("query.{name}"), &mut out);
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// Checks a request body; `None` means the request had no body.
    pub fn validate_request_body(&self, body: Option<&Value>) -> Result<(), Vec<Violation>> {
        let request_body = self.op.get("requestBody").map(|r| self.spec.resolve(r));
        match (request_body, body) {
            (None, None) => Ok(()),
            (None, Some(b)) if b.is_null() || b.as_object().is_some_and(Map::is_empty) => Ok(()),
            (None, Some(_)) => Err(vec![violation("body", "operation takes no request body")]),
            (Some(rb), None) if rb["required"] == true => Err(vec![violation("body", "required request body missing")]),
            (Some(_), None) => Ok(()),
            (Some(rb), Some(b)) => match rb.pointer("/content/application~1json/schema") {
                Some(schema) => self.spec.check(schema, b, Direction::Request, "body"),
                None => Err(vec![violation("body", "operation has no application/json request schema")]),
            },
        }
    }

    /// Checks a response body against the schema declared for `status` (or `default`).
    pub fn validate_response_body(&self, status: u16, body: &Value) -> Result<(), Vec<Violation>> {
        let responses = &self.op["responses"];
        let range = format!("{}XX", status / 100);
        let response = [status.to_string().as_str(), range.as_str(), "default"]
            .into_iter()
            .find_map(|k| responses.get(k))
            .map(|r| self.spec.resolve(r));
        let Some(response) = response else {
            return Err(vec![violation("body", format!("no response defined for status {status}"))]);
        };
        match response.pointer("/content/application~1json/schema") {
            Some(schema) => self.spec.check(schema, body, Direction::Response, "body"),
            None => Err(vec![violation("body", format!("no application/json response schema for status {status}"))]),
        }
    }

    /// Parameters declared for `location`, operation-level ones overriding path-item-level ones.
    fn parameters(&self, location: &str) -> Vec<&'a Value> {
        let mut out: Vec<&'a Value> = Vec::new();
        for list in [&self.op["parameters"], &self.path_item["parameters"]] {
            for p in list.as_array().into_iter().flatten() {
                let p = self.spec.resolve(p);
                if p["in"] == location && !out.iter().any(|q| q["name"] == p["name"]) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Parameters arrive as strings, so they are coerced to the schema's type before validation.
    fn check_param(&self, param: &Value, raw: &[&str], root: &str, out: &mut Vec<Violation>) {
        let schema = &param["schema"];
        let resolved = self.spec.resolve(schema);
        let value = if resolved["type"] == "array" {
            let items = self.spec.resolve(&resolved["items"]);
            let mut values = Vec::new();
            for (i, r) in raw.iter().enumerate() {
                match coerce(items, r) {
                    Ok(v) => values.push(v),
                    Err(msg) => out.push(violation(format!("{root}[{i}]"), msg)),
                }
            }
            Value::Array(values)
        } else {
            if raw.len() > 1 {
                out.push(violation(root, format!("given {} times, expected once", raw.len())));
            }
            match coerce(resolved, raw[0]) {
                Ok(v) => v,
                Err(msg) => return out.push(violation(root, msg)),
            }
        };
        if let Err(v) = self.spec.check(schema, &value, Direction::Request, root) {
            out.extend(v);
        }
    }
}

fn coerce(schema: &Value, raw: &str) -> Result<Value, String> {
    let types = types_of(schema);
    let has = |t: &str| types.contains(&t);
    if has("integer") {
        if let Ok(i) = raw.parse::<i64>() {
            return Ok(i.into());
        }
        if let Ok(u) = raw.parse::<u64>() {
            return Ok(u.into());
        }
    }
    if has("number")
        && let Some(n) = raw.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
    {
        return Ok(Value::Number(n));
    }
    if has("boolean") && (raw == "true" || raw == "false") {
        return Ok(Value::Bool(raw == "true"));
    }
    match types.first() {
        Some(&t) if !has("string") => Err(format!("must be {}, got {}", article(t), Value::from(raw))),
        _ => Ok(Value::from(raw)),
    }
}

/// A schema violation at a location such as `healthcheck.port`, `services[0].name` or `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where the violation is: `body` for the root, `a.b[0].c` below it, `query.x` / `path.x` for parameters.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for Violation {}

fn violation(path: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation { path: path.into(), message: message.into() }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

struct Validator<'s> {
    spec: &'s Spec,
    dir: Direction,
    /// Label for the root value; inner paths are relative to it (`name`, not `body.name`).
    root: &'s str,
    out: Vec<Violation>,
}

impl<'s> Validator<'s> {
    fn report(&mut self, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() {
            self.root.to_owned()
        } else if path.starts_with('[') {
            format!("{}{path}", self.root)
        } else {
            path.to_owned()
        };
        self.out.push(violation(path, message));
    }

    /// `known` holds property names declared elsewhere in an enclosing `allOf`/`oneOf`; its presence
    /// also means the enclosing schema, not this one, decides about unknown fields.
    fn validate(&mut self, schema: &'s Value, value: &Value, path: &str, depth: usize, known: Option<&Known<'s>>) {
        if depth > MAX_DEPTH {
            return self.report(path, "schema nesting too deep (recursive $ref?)");
        }
        let Some(s) = schema.as_object() else { return };
        if value.is_null() && self.spec.flag(schema, "nullable") {
            return;
        }
        if let Some(r) = s.get("$ref") {
            match r.as_str().and_then(|r| self.spec.pointer(r)) {
                Some(target) => self.validate(target, value, path, depth + 1, known),
                None => self.report(path, format!("unresolvable $ref {r}")),
            }
        }
        if !self.check_type(s, value, path) {
            return;
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            let list: Vec<String> =
                options.iter().map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned)).collect();
            self.report(path, format!("must be one of [{}], got {}", list.join(", "), short(value)));
        }
        match value {
            Value::Number(_) => self.check_number(s, value, path),
            Value::String(st) => self.check_string(s, st, path),
            Value::Array(items) => self.check_array(s, items, path, depth),
            Value::Object(obj) => self.check_object(schema, s, obj, path, depth, known),
            _ => {}
        }
        self.check_composition(schema, s, value, path, depth, known);
    }

    fn check_type(&mut self, s: &Map<String, Value>, value: &Value, path: &str) -> bool {
        let types = match s.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return true,
        };
        if types.iter().any(|t| type_matches(t, value)) {
            return true;
        }
        let expected: Vec<String> = types.iter().map(|t| article(t)).collect();
        self.report(path, format!("must be {}, got {}", expected.join(" or "), kind(value)));
        false
    }

    fn check_number(&mut self, s: &Map<String, Value>, value: &Value, path: &str) {
        let Some(x) = value.as_f64() else { return };
        // 3.0 uses a boolean beside minimum/maximum; 3.1 puts the bound itself in exclusiveMinimum/Maximum.
        let bounds =
            [(s.get("minimum"), s.get("exclusiveMinimum"), true), (s.get("maximum"), s.get("exclusiveMaximum"), false)];
        for (bound, exclusive, is_min) in bounds {
            let (limit, exclusive) = match (bound, exclusive) {
                (Some(b), e) => (b, e == Some(&Value::Bool(true))),
                (None, Some(e)) if e.is_number() => (e, true),
                _ => continue,
            };
            let Some(l) = limit.as_f64() else { continue };
            let message = match (is_min, exclusive) {
                (true, false) if x < l => "must be at least",
                (true, true) if x <= l => "must be greater than",
                (false, false) if x > l => "must be at most",
                (false, true) if x >= l => "must be less than",
                _ => continue,
            };
            self.report(path, format!("{message} {limit}, got {value}"));
        }
    }

    fn check_string(&mut self, s: &Map<String, Value>, st: &str, path: &str) {
        let len = st.chars().count();
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && (len as u64) < min
        {
            self.report(path, format!("must be at least {min} characters long, got {len}"));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && (len as u64) > max
        {
            self.report(path, format!("must be at most {max} characters long, got {len}"));
        }
        if let Some(format) = s.get("format").and_then(Value::as_str) {
            let expected = match format {
                "uuid" if !is_uuid(st) => "a uuid",
                "ipv4" if st.parse::<Ipv4Addr>().is_err() => "an IPv4 address",
                "ipv6" if st.parse::<Ipv6Addr>().is_err() => "an IPv6 address",
                "date-time" if !is_date_time(st) => "an RFC 3339 date-time",
                _ => return,
            };
            self.report(path, format!("must be {expected}, got {}", short(&Value::from(st))));
        }
    }

    fn check_array(&mut self, s: &'s Map<String, Value>, items: &[Value], path: &str, depth: usize) {
        let n = items.len();
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && (n as u64) < min
        {
            self.report(path, format!("must have at least {min} items, got {n}"));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && (n as u64) > max
        {
            self.report(path, format!("must have at most {max} items, got {n}"));
        }
        if s.get("uniqueItems") == Some(&Value::Bool(true))
            && let Some((i, j)) = (0..n).flat_map(|j| (0..j).map(move |i| (i, j))).find(|&(i, j)| items[i] == items[j])
        {
            self.report(path, format!("items must be unique, [{j}] duplicates [{i}]"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.validate(item_schema, item, &format!("{path}[{i}]"), depth + 1, None);
            }
        }
    }

    fn check_object(
        &mut self,
        schema: &'s Value,
        s: &'s Map<String, Value>,
        obj: &Map<String, Value>,
        path: &str,
        depth: usize,
        known: Option<&Known<'s>>,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        let prop = |name: &str| props.and_then(|p| p.get(name));

        for name in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if obj.contains_key(name) {
                continue;
            }
            let exempt =
                prop(name).or_else(|| known.and_then(|k| k.get(name).copied())).is_some_and(|p| match self.dir {
                    Direction::Request => self.spec.flag(p, "readOnly"),
                    Direction::Response => self.spec.flag(p, "writeOnly"),
                });
            if !exempt {
                self.report(&child(path, name), "required field missing");
            }
        }
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
            && (obj.len() as u64) < min
        {
            self.report(path, format!("must have at least {min} fields, got {}", obj.len()));
        }
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
            && (obj.len() as u64) > max
        {
            self.report(path, format!("must have at most {max} fields, got {}", obj.len()));
        }

        // With allOf, the members together define the known fields, so the union decides strictness.
        let union = s.contains_key("allOf").then(|| {
            let mut acc = Members::default();
            self.spec.collect_members(schema, &mut acc, 0);
            acc
        });
        let additional = s.get("additionalProperties");
        let closed = known.is_none()
            && match &union {
                Some(u) => !u.open && u.has_props,
                None if s.contains_key("oneOf") || s.contains_key("anyOf") => false,
                None => additional == Some(&Value::Bool(false)) || (additional.is_none() && props.is_some()),
            };

        for (key, v) in obj {
            let child_path = child(path, key);
            if let Some(p) = prop(key) {
                if self.dir == Direction::Request && path.is_empty() && self.spec.flag(p, "readOnly") {
                    self.report(&child_path, "is read-only");
                } else if self.dir == Direction::Response && self.spec.flag(p, "writeOnly") {
                    self.report(&child_path, "is write-only");
                }
                self.validate(p, v, &child_path, depth + 1, None);
            } else if known.is_some_and(|k| k.contains_key(key.as_str()))
                || union.as_ref().is_some_and(|u| u.names.contains_key(key.as_str()))
            {
                // Another member of the enclosing composition declares it and validates it.
            } else if let Some(extra) = additional.filter(|a| a.is_object()) {
                self.validate(extra, v, &child_path, depth + 1, None);
            } else if closed {
                self.report(&child_path, "unknown field");
            }
        }
    }

    fn check_composition(
        &mut self,
        schema: &'s Value,
        s: &'s Map<String, Value>,
        value: &Value,
        path: &str,
        depth: usize,
        known: Option<&Known<'s>>,
    ) {
        let is_object = value.is_object();
        if let Some(members) = s.get("allOf").and_then(Value::as_array) {
            let mut names = known.cloned().unwrap_or_default();
            if is_object {
                let mut acc = Members::default();
                self.spec.collect_members(schema, &mut acc, 0);
                names.extend(acc.names);
            }
            let inner = is_object.then_some(&names).or(known);
            for m in members {
                self.validate(m, value, path, depth + 1, inner);
            }
        }
        for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            let Some(alternatives) = s.get(keyword).and_then(Value::as_array) else { continue };
            let mut names = known.cloned().unwrap_or_default();
            names.extend(
                s.get("properties").and_then(Value::as_object).into_iter().flatten().map(|(k, p)| (k.as_str(), p)),
            );
            let inner = (is_object && (known.is_some() || !names.is_empty())).then_some(&names);
            let mut passed = 0;
            let mut closest: Option<Vec<Violation>> = None;
            for alt in alternatives {
                let saved = std::mem::take(&mut self.out);
                self.validate(alt, value, path, depth + 1, inner);
                let found = std::mem::replace(&mut self.out, saved);
                if found.is_empty() {
                    passed += 1;
                } else if closest.as_ref().is_none_or(|c| found.len() < c.len()) {
                    closest = Some(found);
                }
            }
            if passed == 0 {
                let detail: Vec<String> = closest.unwrap_or_default().iter().map(Violation::to_string).collect();
                self.report(
                    path,
                    format!("must match one of the {keyword} alternatives; closest: {}", detail.join("; ")),
                );
            } else if exactly_one && passed > 1 {
                self.report(path, format!("must match exactly one of the oneOf alternatives, matched {passed}"));
            }
        }
    }
}

/// Property schemas by name, declared by an enclosing composition.
type Known<'s> = BTreeMap<&'s str, &'s Value>;

#[derive(Default)]
struct Members<'s> {
    names: Known<'s>,
    open: bool,
    has_props: bool,
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn type_matches(t: &str, value: &Value) -> bool {
    match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn article(t: &str) -> String {
    match t {
        "object" | "array" | "integer" => format!("an {t}"),
        "null" => "null".to_owned(),
        _ => format!("a {t}"),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Keeps messages readable when the offending value is large.
fn short(value: &Value) -> String {
    let s = value.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// RFC 3339 shape: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with field ranges but no calendar check.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let digits = b.get(from..from + len)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    let shape = num(0, 4).is_some()
        && sep(4, b"-")
        && num(5, 2).is_some_and(|m| (1..=12).contains(&m))
        && sep(7, b"-")
        && num(8, 2).is_some_and(|d| (1..=31).contains(&d))
        && sep(10, b"Tt")
        && num(11, 2).is_some_and(|h| h <= 23)
        && sep(13, b":")
        && num(14, 2).is_some_and(|m| m <= 59)
        && sep(16, b":")
        && num(17, 2).is_some_and(|s| s <= 60);
    if !shape {
        return false;
    }
    let mut i = 19;
    if sep(i, b".") {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        i += 1 + digits;
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] if b.len() - i == 6 => {
            num(i + 1, 2).is_some_and(|h| h <= 23) && sep(i + 3, b":") && num(i + 4, 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
