//! The one pipeline every create and update goes through, whatever the kind
//! (k8s.io/apiserver's `BeforeCreate`/`BeforeUpdate` and its store's
//! `GuaranteedUpdate`): metadata parsed into `ObjectMeta` (a malformed one is
//! a 400), names generated from `generateName` and drawn again on a
//! collision, the resourceVersion precondition, the kind's strategy hooks, and
//! apimachinery's metadata rules plus the kind's own in one 422 with every
//! cause. Storages only store.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::Rng as _;
use serde_json::{Value, json};

use super::resource::ResourceDef;
use super::status::{ApiError, ApiResult, Cause};
use super::storage::{Context, Creater, DeleteOptions, Transform, Updater};
use super::strategy::{Strategy, keep};
use super::validation;

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Random characters appended to a `generateName`.
const GENERATED_SUFFIX: usize = 5;
/// Longest prefix kept, so a generated name fits a DNS label (63).
const MAX_GENERATED_PREFIX: usize = 63 - GENERATED_SUFFIX;
/// Names tried for a `generateName` before answering AlreadyExists, as
/// kube-apiserver does since RetryGenerateName (GA in 1.32): with 5 random
/// characters, thousands of objects of one prefix (`csr-`) would otherwise
/// collide more often than not.
pub const GENERATE_NAME_ATTEMPTS: usize = 8;

/// apimachinery's `SimpleNameGenerator`: the prefix (at most 58 bytes) and 5 random characters.
pub fn generate_name(prefix: &str) -> String {
    let mut cut = prefix.len().min(MAX_GENERATED_PREFIX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut rng = rand::rng();
    let suffix: String =
        (0..GENERATED_SUFFIX).map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char).collect();
    format!("{}{suffix}", &prefix[..cut])
}

/// The object's metadata as `ObjectMeta`; a field of the wrong type is a 400, as decoding is in kube-apiserver.
pub fn object_meta(def: &ResourceDef, obj: &Value) -> ApiResult<ObjectMeta> {
    match &obj["metadata"] {
        Value::Null => Ok(ObjectMeta::default()),
        m => serde_json::from_value(m.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: metadata: {e}",
                kind = def.kind,
                version = def.version
            ))
        }),
    }
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn invalid(def: &ResourceDef, strategy: &dyn Strategy, name: &str, causes: Vec<Cause>) -> ApiError {
    let (group, kind) = strategy.error_kind().unwrap_or((def.group, def.kind));
    ApiError::invalid(kind, group, def.plural, name, causes)
}

/// Creates `obj` through `creater`: prepared and validated by its strategy,
/// its name generated (again, on a collision) when only `generateName` is set.
pub async fn create(def: &ResourceDef, creater: &dyn Creater, ctx: &Context, obj: Value) -> ApiResult<Value> {
    let Some(strategy) = creater.create_strategy() else {
        return creater.create(ctx, obj).await;
    };
    let prefix = match (name_of(&obj), obj["metadata"]["generateName"].as_str()) {
        ("", Some(prefix)) if !prefix.is_empty() => Some(prefix.to_owned()),
        _ => None,
    };
    for attempt in 1.. {
        let mut candidate = obj.clone();
        if let Some(prefix) = &prefix {
            candidate["metadata"]["name"] = json!(generate_name(prefix));
        }
        if let Some(meta) = candidate["metadata"].as_object_mut() {
            // Set by the storage, never by the request.
            for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                meta.remove(field);
            }
        }
        strategy.prepare_for_create(ctx, &mut candidate).await?;
        let meta = object_meta(def, &candidate)?;
        let mut causes = validation::object_meta(&meta, def.namespaced, strategy.name_rule());
        causes.extend(strategy.validate(ctx, &candidate));
        if !causes.is_empty() {
            return Err(invalid(def, strategy, name_of(&candidate), causes));
        }
        match creater.create(ctx, candidate).await {
            Err(e) if prefix.is_some() && e.reason == "AlreadyExists" && attempt < GENERATE_NAME_ATTEMPTS => {}
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// Checks `new`'s resourceVersion against `current`'s: none means the current
/// one (an unconditional update), another one is a 409.
fn check_resource_version(def: &ResourceDef, new: &mut Value, current: &Value) -> ApiResult<()> {
    let current_rv = &current["metadata"]["resourceVersion"];
    match new["metadata"]["resourceVersion"].as_str() {
        None | Some("") => new["metadata"]["resourceVersion"] = current_rv.clone(),
        Some(rv) if Some(rv) == current_rv.as_str() => {}
        Some(_) => return Err(ApiError::conflict(def.group_resource(), name_of(current))),
    }
    Ok(())
}

/// What no request may change, kept from `old` as `BeforeUpdate` does: the
/// generation (the strategy moves it), creation and deletion stamps, and the
/// uid when the request leaves it out.
fn keep_system_fields(new: &mut Value, old: &Value) {
    let (new_meta, old_meta) = (&mut new["metadata"], &old["metadata"]);
    for field in ["generation", "creationTimestamp"] {
        keep(new_meta, old_meta, field);
    }
    for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
        if !old_meta[field].is_null() {
            new_meta[field] = old_meta[field].clone();
        }
    }
    if new_meta["uid"].as_str().is_none_or(str::is_empty) {
        keep(new_meta, old_meta, "uid");
    }
}

/// Checks and prepares `new`, the next version of `current` (of the
/// subresource `sub`, if any): the name, the resourceVersion precondition,
/// the fields no request may change, the strategy's hooks, and the metadata
/// rules, all causes in one 422. Storages that turn a subresource into a
/// change of the object (a Scale) run it again on the object.
pub fn prepare_update(
    def: &ResourceDef,
    strategy: &dyn Strategy,
    ctx: &Context,
    sub: Option<&str>,
    mut new: Value,
    current: &Value,
) -> ApiResult<Value> {
    let name = name_of(current);
    if name_of(&new) != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            name_of(&new)
        )));
    }
    check_resource_version(def, &mut new, current)?;
    // The generic metadata rules are for the kind itself, not for views such as a Scale.
    let own_kind = sub.is_none_or(|s| def.subresource(s).is_some_and(|d| d.kind == def.kind));
    if own_kind {
        keep_system_fields(&mut new, current);
    }
    strategy.prepare_for_update(ctx, sub, &mut new, current)?;
    let mut causes = Vec::new();
    if own_kind {
        causes = validation::object_meta_update(&object_meta(def, &new)?, &object_meta(def, current)?, def.namespaced);
    }
    causes.extend(strategy.validate_update(ctx, sub, &new, current));
    if !causes.is_empty() {
        return Err(invalid(def, strategy, name, causes));
    }
    Ok(new)
}

/// Updates object `name` (or its subresource `sub`) through `updater` with
/// what `make` makes of the current version, atomically (no retry is needed:
/// the storage calls the transform on the version it stores over).
pub async fn update<'a>(
    def: &'a ResourceDef,
    updater: &'a dyn Updater,
    ctx: &'a Context,
    name: &'a str,
    sub: Option<&'a str>,
    make: impl FnOnce(&Value) -> ApiResult<Value> + Send + 'a,
) -> ApiResult<Value> {
    let strategy = updater.update_strategy();
    let transform: Transform<'a> =
        Box::new(move |current: &Value| prepare_update(def, strategy, ctx, sub, make(current)?, current));
    updater.update(ctx, name, sub, transform).await
}

impl DeleteOptions {
    /// Checks the preconditions against the current object (409 when one fails).
    pub fn check(&self, def: &ResourceDef, current: &Value) -> ApiResult<()> {
        let name = name_of(current);
        if self.uid.as_deref().is_some_and(|u| Some(u) != current["metadata"]["uid"].as_str()) {
            return Err(ApiError::conflict_message(
                def.group_resource(),
                name,
                "Precondition failed: UID in precondition does not match the object",
            ));
        }
        if self
            .resource_version
            .as_deref()
            .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str())
        {
            return Err(ApiError::conflict(def.group_resource(), name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::authn::UserInfo;
    use crate::status::GroupResource;
    use crate::storage::BoxFuture;
    use crate::strategy::Plain;

    #[test]
    fn generated_names_are_the_prefix_and_five_characters() {
        let name = generate_name("csr-");
        assert!(name.starts_with("csr-") && name.len() == 9, "{name}");
        assert!(name[4..].bytes().all(|b| NAME_CHARS.contains(&b)), "{name}");
        let long = generate_name(&"p".repeat(100));
        assert_eq!(long.len(), 63, "the prefix is cut so the name fits a label");
    }

    /// Refuses the first `taken` names as existing; records every name tried.
    struct Crowded {
        taken: usize,
        tried: Mutex<Vec<String>>,
    }

    impl Creater for Crowded {
        fn create_strategy(&self) -> Option<&dyn Strategy> {
            Some(&Plain)
        }

        fn create<'a>(&'a self, _ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
            let mut tried = self.tried.lock().unwrap();
            tried.push(name_of(&obj).to_owned());
            let result = if tried.len() <= self.taken {
                Err(ApiError::already_exists(GroupResource { group: "", resource: "things" }, name_of(&obj)))
            } else {
                Ok(obj)
            };
            Box::pin(std::future::ready(result))
        }
    }

    fn def() -> ResourceDef {
        ResourceDef { kind: "Thing", plural: "things", version: "v1", ..Default::default() }
    }

    fn ctx() -> Context {
        Context { user: UserInfo::default(), namespace: None, dry_run: false }
    }

    #[tokio::test]
    async fn a_generated_name_that_collides_is_drawn_again() {
        let crowded = Crowded { taken: 3, tried: Mutex::new(Vec::new()) };
        let obj = json!({"metadata": {"generateName": "thing-"}});
        let created = create(&def(), &crowded, &ctx(), obj).await.expect("the fourth name is free");
        let tried = crowded.tried.lock().unwrap().clone();
        assert_eq!(tried.len(), 4, "{tried:?}");
        assert_eq!(name_of(&created), tried[3]);
        assert!(tried.iter().all(|n| n.starts_with("thing-") && n.len() == 11), "{tried:?}");

        let full = Crowded { taken: usize::MAX, tried: Mutex::new(Vec::new()) };
        let e = create(&def(), &full, &ctx(), json!({"metadata": {"generateName": "thing-"}})).await.unwrap_err();
        assert_eq!(e.reason, "AlreadyExists");
        assert_eq!(full.tried.lock().unwrap().len(), GENERATE_NAME_ATTEMPTS, "bounded, as kube-apiserver");
    }

    #[tokio::test]
    async fn a_chosen_name_that_exists_is_not_retried_and_bad_metadata_is_one_422() {
        let crowded = Crowded { taken: 1, tried: Mutex::new(Vec::new()) };
        let e = create(&def(), &crowded, &ctx(), json!({"metadata": {"name": "mine"}})).await.unwrap_err();
        assert_eq!((e.reason, crowded.tried.lock().unwrap().len()), ("AlreadyExists", 1));

        let bad = json!({"metadata": {"name": "Bad_Name", "labels": {"a": "not ok!"}}});
        let e = create(&def(), &crowded, &ctx(), bad).await.unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        let fields: Vec<&str> = e.causes().iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.labels"], "every cause at once");
        assert!(e.message.starts_with("Thing \"Bad_Name\" is invalid: [metadata.name: Invalid value"), "{}", e.message);

        let malformed = json!({"metadata": {"name": "x", "labels": ["a"]}});
        let e = create(&def(), &crowded, &ctx(), malformed).await.unwrap_err();
        assert_eq!(e.code, 400, "a wrong type is a decoding error: {}", e.message);
    }
}
