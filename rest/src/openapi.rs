//! OpenAPI v2 and v3 documents generated from resource definitions, with the
//! `x-kubernetes-*` extensions kubectl needs (`explain`, field validation,
//! patch-type choice), and the unknown-field check behind `fieldValidation`.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::resource::ResourceDef;

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const REF_V3: &str = "#/components/schemas/";
const REF_V2: &str = "#/definitions/";

/// The reverse-DNS prefix Kubernetes names a group's definitions with.
fn definition_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        return format!("io.k8s.api.core.{version}");
    }
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}", parts.join("."))
}

/// The definition name of `kind` in `group/version`.
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    format!("{}.{kind}", definition_prefix(group, version))
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("{REF_V3}{name}")})
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// The apimachinery definitions every document refers to.
fn meta_schemas() -> Map<String, Value> {
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}});
    let mut m = Map::new();
    m.insert(format!("{META}.Time"), json!({"type": "string", "format": "date-time", "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON."}));
    m.insert(
        format!("{META}.OwnerReference"),
        json!({"type": "object", "description": "OwnerReference contains enough information to let you identify an owning object.", "required": ["apiVersion", "kind", "name", "uid"], "properties": {
            "apiVersion": {"type": "string", "description": "API version of the referent."},
            "kind": {"type": "string", "description": "Kind of the referent."},
            "name": {"type": "string", "description": "Name of the referent."},
            "uid": {"type": "string", "description": "UID of the referent."},
            "controller": {"type": "boolean", "description": "If true, this reference points to the managing controller."},
            "blockOwnerDeletion": {"type": "boolean", "description": "If true, the owner cannot be deleted from the key-value store until this reference is removed."}
        }}),
    );
    m.insert(
        format!("{META}.ManagedFieldsEntry"),
        json!({"type": "object", "description": "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.", "x-kubernetes-preserve-unknown-fields": true}),
    );
    m.insert(
        format!("{META}.ObjectMeta"),
        json!({"type": "object", "description": "ObjectMeta is metadata that all persisted resources must have.", "properties": {
            "name": {"type": "string", "description": "Name must be unique within a namespace."},
            "generateName": {"type": "string", "description": "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."},
            "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
            "uid": {"type": "string", "description": "UID is the unique in time and space value for this object."},
            "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version of this object."},
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": {"allOf": [r(&format!("{META}.Time"))], "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
            "deletionTimestamp": {"allOf": [r(&format!("{META}.Time"))], "description": "DeletionTimestamp is the time after which this resource will be deleted."},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64", "description": "Number of seconds allowed for this object to gracefully terminate."},
            "labels": string_map.clone(),
            "annotations": string_map,
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"default": {}, "allOf": [r(&format!("{META}.OwnerReference"))]}, "description": "List of objects depended by this object."},
            "managedFields": {"type": "array", "items": {"default": {}, "allOf": [r(&format!("{META}.ManagedFieldsEntry"))]}, "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow."},
            "selfLink": {"type": "string", "description": "Deprecated."}
        }}),
    );
    m.insert(
        format!("{META}.ListMeta"),
        json!({"type": "object", "description": "ListMeta describes metadata that synthetic resources must have.", "properties": {
            "resourceVersion": {"type": "string", "description": "String that identifies the server's internal version of this object."},
            "continue": {"type": "string", "description": "continue may be set if the user set a limit on the number of items returned."},
            "remainingItemCount": {"type": "integer", "format": "int64", "description": "The number of subsequent items in the list."},
            "selfLink": {"type": "string", "description": "Deprecated."}
        }}),
    );
    m.insert(
        format!("{META}.Status"),
        json!({"type": "object", "description": "Status is a return value for calls that don't return other objects.", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"}, "reason": {"type": "string"}, "status": {"type": "string"},
            "details": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "metadata": {"default": {}, "allOf": [r(&format!("{META}.ListMeta"))]}
        }, "x-kubernetes-group-version-kind": [gvk("", "v1", "Status")]}),
    );
    m.insert(
        format!("{META}.Patch"),
        json!({"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}),
    );
    m.insert(
        format!("{META}.DeleteOptions"),
        json!({"type": "object", "description": "DeleteOptions may be provided when deleting an API object.", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "dryRun": {"type": "array", "items": {"type": "string", "default": ""}},
            "gracePeriodSeconds": {"type": "integer", "format": "int64"},
            "preconditions": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "uid": {"type": "string"}}},
            "propagationPolicy": {"type": "string"}
        }}),
    );
    m.insert(
        format!("{META}.WatchEvent"),
        json!({"type": "object", "description": "Event represents a single event to a watched resource.", "required": ["type", "object"], "properties": {
            "type": {"type": "string", "default": ""}, "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }}),
    );
    m.insert(
        "io.k8s.api.autoscaling.v1.Scale".into(),
        json!({"type": "object", "description": "Scale represents a scaling request for a resource.", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"default": {}, "allOf": [r(&format!("{META}.ObjectMeta"))]},
            "spec": {"type": "object", "description": "ScaleSpec describes the attributes of a scale subresource.", "properties": {"replicas": {"type": "integer", "format": "int32", "description": "replicas is the desired number of instances for the scaled object."}}},
            "status": {"type": "object", "description": "ScaleStatus represents the current status of a scale subresource.", "required": ["replicas"], "properties": {
                "replicas": {"type": "integer", "format": "int32", "default": 0, "description": "replicas is the actual number of observed instances of the scaled object."},
                "selector": {"type": "string", "description": "selector is the label query over pods that should match the replicas count."}
            }}
        }, "x-kubernetes-group-version-kind": [gvk("autoscaling", "v1", "Scale")]}),
    );
    m
}

/// The full object schema of a resource (apiVersion, kind, metadata added).
pub fn object_schema(def: &ResourceDef) -> Value {
    let mut schema = def.schema.clone();
    let props = schema
        .as_object_mut()
        .expect("resource schemas are objects")
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("properties is an object");
    props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
    props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
    props.insert(
        "metadata".into(),
        json!({"default": {}, "allOf": [r(&format!("{META}.ObjectMeta"))], "description": "Standard object's metadata."}),
    );
    schema["type"] = json!("object");
    schema["x-kubernetes-group-version-kind"] = json!([gvk(def.group, def.version, def.kind)]);
    schema
}

fn list_schema(def: &ResourceDef) -> Value {
    json!({
        "type": "object",
        "description": format!("{} is a list of {}", def.list_kind(), def.kind),
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": r(&definition_name(def.group, def.version, def.kind))},
            "metadata": {"default": {}, "allOf": [r(&format!("{META}.ListMeta"))]}
        },
        "x-kubernetes-group-version-kind": [gvk(def.group, def.version, &def.list_kind())],
    })
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}, "required": location == "path"})
}

fn write_params() -> Vec<Value> {
    vec![
        param(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted. Valid value: All",
        ),
        param(
            "fieldManager",
            "query",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        param(
            "fieldValidation",
            "query",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values: Ignore, Warn, Strict.",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    [
        ("labelSelector", "A selector to restrict the list of returned objects by their labels."),
        ("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
        ("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        ("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        ("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
        ("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type BOOKMARK."),
        ("timeoutSeconds", "Timeout for the list/watch call."),
        ("limit", "limit is a maximum number of responses to return for a list call."),
        ("continue", "The continue option should be set when retrieving more results from the server."),
        ("sendInitialEvents", "Not supported: requests with it are refused with 422."),
    ]
    .iter()
    .map(|(n, d)| param(n, "query", d))
    .collect()
}

fn response(schema_ref: &str) -> Value {
    json!({
        "200": {"description": "OK", "content": {"application/json": {"schema": r(schema_ref)}}},
        "401": {"description": "Unauthorized"}
    })
}

fn operation(id: String, action: &str, gvk_: Value, description: String, params: Vec<Value>, out: &str) -> Value {
    json!({
        "operationId": id,
        "description": description,
        "parameters": params,
        "responses": response(out),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk_,
    })
}

fn body(content_types: &[&str], schema_ref: &str) -> Value {
    let content: Map<String, Value> =
        content_types.iter().map(|ct| ((*ct).to_owned(), json!({"schema": r(schema_ref)}))).collect();
    json!({"required": true, "content": content})
}

fn camel(s: &str) -> String {
    s.split(['.', '-', '/'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The paths of one resource (v3 shape).
fn paths(def: &ResourceDef) -> Map<String, Value> {
    let mut out = Map::new();
    let prefix = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let base = if def.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{prefix}/{}", def.plural)
    };
    let obj = definition_name(def.group, def.version, def.kind);
    let list = definition_name(def.group, def.version, &def.list_kind());
    let id = format!("{}{}", camel(def.group), camel(def.version));
    let kind_gvk = gvk(def.group, def.version, def.kind);
    let ns_param: Vec<Value> = if def.namespaced {
        vec![param("namespace", "path", "object name and auth scope, such as for teams and projects")]
    } else {
        vec![]
    };
    let scope = if def.namespaced { "Namespaced" } else { "" };
    let kind = def.kind;

    let mut coll = Map::new();
    if def.allows("list") {
        coll.insert(
            "get".into(),
            operation(
                format!("list{id}{scope}{kind}"),
                "list",
                kind_gvk.clone(),
                format!("list or watch objects of kind {kind}"),
                list_params(),
                &list,
            ),
        );
    }
    if def.allows("create") {
        let mut op = operation(
            format!("create{id}{scope}{kind}"),
            "post",
            kind_gvk.clone(),
            format!("create a {kind}"),
            write_params(),
            &obj,
        );
        op["requestBody"] = body(&["application/json"], &obj);
        coll.insert("post".into(), op);
    }
    if def.allows("deletecollection") {
        coll.insert(
            "delete".into(),
            operation(
                format!("deletecollection{id}{scope}{kind}"),
                "deletecollection",
                kind_gvk.clone(),
                format!("delete collection of {kind}"),
                list_params(),
                &format!("{META}.Status"),
            ),
        );
    }
    if !coll.is_empty() {
        coll.insert("parameters".into(), Value::Array(ns_param.clone()));
        out.insert(base.clone(), Value::Object(coll));
    }
    if def.namespaced && def.allows("list") {
        let mut all = Map::new();
        all.insert(
            "get".into(),
            operation(
                format!("list{id}{kind}ForAllNamespaces"),
                "list",
                kind_gvk.clone(),
                format!("list or watch objects of kind {kind}"),
                list_params(),
                &list,
            ),
        );
        out.insert(format!("{prefix}/{}", def.plural), Value::Object(all));
    }

    let mut item = Map::new();
    let name_param = param("name", "path", &format!("name of the {kind}"));
    if def.allows("get") {
        item.insert(
            "get".into(),
            operation(
                format!("read{id}{scope}{kind}"),
                "get",
                kind_gvk.clone(),
                format!("read the specified {kind}"),
                vec![],
                &obj,
            ),
        );
    }
    if def.allows("update") {
        let mut op = operation(
            format!("replace{id}{scope}{kind}"),
            "put",
            kind_gvk.clone(),
            format!("replace the specified {kind}"),
            write_params(),
            &obj,
        );
        op["requestBody"] = body(&["application/json"], &obj);
        item.insert("put".into(), op);
    }
    if def.allows("patch") {
        let mut op = operation(
            format!("patch{id}{scope}{kind}"),
            "patch",
            kind_gvk.clone(),
            format!("partially update the specified {kind}"),
            write_params(),
            &obj,
        );
        // No strategic-merge or apply patch here: kubectl then sends merge patches.
        op["requestBody"] =
            body(&["application/json-patch+json", "application/merge-patch+json"], &format!("{META}.Patch"));
        item.insert("patch".into(), op);
    }
    if def.allows("delete") {
        let mut op = operation(
            format!("delete{id}{scope}{kind}"),
            "delete",
            kind_gvk.clone(),
            format!("delete a {kind}"),
            write_params(),
            &obj,
        );
        op["requestBody"] = body(&["application/json"], &format!("{META}.DeleteOptions"));
        op["requestBody"]["required"] = json!(false);
        item.insert("delete".into(), op);
    }
    let mut item_params = ns_param.clone();
    item_params.push(name_param.clone());
    item.insert("parameters".into(), Value::Array(item_params.clone()));
    out.insert(format!("{base}/{{name}}"), Value::Object(item));

    for sub in &def.subresources {
        let sub_kind = if sub.kind == def.kind {
            obj.clone()
        } else if sub.group == "autoscaling" && sub.kind == "Scale" {
            "io.k8s.api.autoscaling.v1.Scale".to_owned()
        } else {
            definition_name(sub.group, sub.version, sub.kind)
        };
        let sub_gvk = gvk(sub.group, sub.version, sub.kind);
        let sub_id = format!("{id}{scope}{kind}{}", camel(sub.name));
        let mut ops = Map::new();
        for verb in sub.verbs {
            let (method, action, prefix_word) = match *verb {
                "get" => ("get", "get", "read"),
                "update" => ("put", "put", "replace"),
                "patch" => ("patch", "patch", "patch"),
                "create" => ("post", "post", "create"),
                _ => continue,
            };
            let params = if method == "get" { vec![] } else { write_params() };
            let mut op = operation(
                format!("{prefix_word}{sub_id}"),
                action,
                sub_gvk.clone(),
                format!("{prefix_word} {} of the specified {kind}", sub.name),
                params,
                &sub_kind,
            );
            match method {
                "put" | "post" => op["requestBody"] = body(&["application/json"], &sub_kind),
                "patch" => {
                    op["requestBody"] = body(
                        &["application/json-patch+json", "application/merge-patch+json"],
                        &format!("{META}.Patch"),
                    );
                }
                _ => {}
            }
            ops.insert(method.into(), op);
        }
        ops.insert("parameters".into(), Value::Array(item_params.clone()));
        out.insert(format!("{base}/{{name}}/{}", sub.name), Value::Object(ops));
    }
    out
}

/// Extra schemas a resource's subresources return (besides Scale and itself).
pub type ExtraSchemas = Vec<(String, Value)>;

/// The OpenAPI v3 document of one group/version.
pub fn v3_document(defs: &[&ResourceDef], extra: &ExtraSchemas, title: &str) -> Value {
    let mut schemas = meta_schemas();
    let mut all_paths = Map::new();
    for def in defs {
        schemas.insert(definition_name(def.group, def.version, def.kind), object_schema(def));
        schemas.insert(definition_name(def.group, def.version, &def.list_kind()), list_schema(def));
        all_paths.extend(paths(def));
    }
    for (name, schema) in extra {
        schemas.insert(name.clone(), schema.clone());
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": title, "version": "v1"},
        "paths": all_paths,
        "components": {"schemas": schemas},
    })
}

/// The hash a v3 document is addressed with (`?hash=`), as kube-openapi computes it.
pub fn hash(doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).expect("documents serialise");
    Sha512::digest(&bytes).iter().map(|b| format!("{b:02X}")).collect()
}

/// Rewrites every v3 construct of `v` into its v2 (Swagger) equivalent.
fn to_v2(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => (k.clone(), Value::String(s.replace(REF_V3, REF_V2))),
                    _ => (k.clone(), to_v2(v)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(to_v2).collect()),
        other => other.clone(),
    }
}

/// The OpenAPI v2 document of every served group/version.
pub fn v2_document(defs: &[&ResourceDef], extra: &ExtraSchemas, title: &str) -> Value {
    let v3 = v3_document(defs, extra, title);
    let mut paths = Map::new();
    for (path, item) in v3["paths"].as_object().into_iter().flatten() {
        let mut out = Map::new();
        for (method, op) in item.as_object().into_iter().flatten() {
            if method == "parameters" {
                let ps: Vec<Value> = op.as_array().into_iter().flatten().map(v2_param).collect();
                out.insert(method.clone(), Value::Array(ps));
                continue;
            }
            let mut op2 = op.clone();
            let mut params: Vec<Value> = op["parameters"].as_array().into_iter().flatten().map(v2_param).collect();
            let mut consumes = vec![json!("application/json")];
            if let Some(rb) = op.get("requestBody") {
                let content = rb["content"].as_object().cloned().unwrap_or_default();
                consumes = content.keys().map(|k| json!(k)).collect();
                let schema = content.values().next().map(|c| c["schema"].clone()).unwrap_or(json!({}));
                params.push(json!({"name": "body", "in": "body", "required": rb["required"].as_bool().unwrap_or(true), "schema": schema}));
                op2.as_object_mut().expect("operation").remove("requestBody");
            }
            op2["parameters"] = Value::Array(params);
            op2["consumes"] = Value::Array(consumes);
            op2["produces"] = json!(["application/json"]);
            op2["schemes"] = json!(["https"]);
            let schema = op["responses"]["200"]["content"]["application/json"]["schema"].clone();
            op2["responses"] =
                json!({"200": {"description": "OK", "schema": schema}, "401": {"description": "Unauthorized"}});
            out.insert(method.clone(), op2);
        }
        paths.insert(path.clone(), Value::Object(out));
    }
    to_v2(&json!({
        "swagger": "2.0",
        "info": {"title": title, "version": "v1"},
        "paths": paths,
        "definitions": v3["components"]["schemas"],
    }))
}

fn v2_param(p: &Value) -> Value {
    let mut p2 = p.clone();
    if let Some(obj) = p2.as_object_mut()
        && let Some(schema) = obj.remove("schema")
    {
        obj.insert("type".into(), schema["type"].clone());
        obj.insert("uniqueItems".into(), json!(true));
    }
    p2
}

/// The paths (dot-separated, as `strict decoding error: unknown field "spec.x"` names
/// them) of fields of `value` that `schema` does not define. `defs` resolves `$ref`s.
pub fn unknown_fields(schema: &Value, value: &Value, defs: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, defs, "", &mut out, 0);
    out
}

fn resolve<'s>(schema: &'s Value, defs: &'s Map<String, Value>) -> &'s Value {
    if let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix(REF_V3)) {
        return defs.get(name).unwrap_or(schema);
    }
    if let Some([only]) = schema["allOf"].as_array().map(Vec::as_slice) {
        return resolve(only, defs);
    }
    schema
}

fn walk(schema: &Value, value: &Value, defs: &Map<String, Value>, path: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 32 {
        return;
    }
    let schema = resolve(schema, defs);
    if schema["x-kubernetes-preserve-unknown-fields"] == json!(true) {
        return;
    }
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            for (k, v) in map {
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(sub), _) => walk(sub, v, defs, &join(k), out, depth + 1),
                    (None, Some(Value::Object(_))) => {
                        walk(&schema["additionalProperties"], v, defs, &join(k), out, depth + 1);
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if props.is_some() => out.push(join(k)),
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item_schema, v, defs, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// The media type of OpenAPI v2 in gnostic's protobuf encoding.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// A gnostic `openapi_v2.Document` with only `swagger` (field 1) and `info`
/// (field 2: title 1, version 2): valid, and without definitions.
pub fn minimal_v2_protobuf(title: &str) -> Vec<u8> {
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2];
        let mut len = bytes.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(bytes);
        out
    }
    let info = [field(1, title.as_bytes()), field(2, b"v1")].concat();
    [field(1, b"2.0"), field(2, &info)].concat()
}

/// Every schema of a v3 document, for `unknown_fields`.
pub fn schemas_of(doc: &Value) -> Map<String, Value> {
    doc["components"]["schemas"].as_object().cloned().unwrap_or_default()
}
