//! What a resource is, as discovery, OpenAPI and tables see it.

use serde_json::Value;

/// How a table column's cell is computed from an object.
pub type CellFn = fn(&Value) -> Value;

/// A column of `kubectl get` output.
#[derive(Clone)]
pub struct Column {
    /// Header, e.g. `READY`.
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// `name` for the column kubectl prefixes with the kind; else empty.
    pub format: &'static str,
    /// Shown by `kubectl get -o wide` only when > 0.
    pub priority: i32,
    /// What the column means.
    pub description: &'static str,
    /// Computes the cell.
    pub cell: CellFn,
}

/// The name of the AGE column, which the table renders for every kind.
pub const AGE: &str = "Age";

impl Column {
    /// Where AGE goes among a kind's columns, when not last (kubectl prints
    /// `NAME READY STATUS RESTARTS AGE IP NODE` for Pods): the table renders
    /// its cell, and adds no AGE column at the end.
    pub fn age() -> Column {
        Column {
            name: AGE,
            type_: "string",
            format: "",
            priority: 0,
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
            cell: |_| Value::Null,
        }
    }

    /// Whether this is the AGE placeholder of [`Column::age`].
    pub fn is_age(&self) -> bool {
        self.name == AGE
    }
}

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Column").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A subresource: its path segment, what it returns and which verbs it takes.
#[derive(Debug, Clone)]
pub struct Subresource {
    /// Path segment, e.g. `scale`.
    pub name: &'static str,
    /// Group of the kind it returns (`autoscaling` for scale; the resource's own otherwise).
    pub group: &'static str,
    /// Version of that kind.
    pub version: &'static str,
    /// Kind it returns, e.g. `Scale`.
    pub kind: &'static str,
    /// Verbs, e.g. `get`, `update`, `patch`, `create`.
    pub verbs: &'static [&'static str],
}

/// A served resource.
#[derive(Debug, Clone, Default)]
pub struct ResourceDef {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural, the path segment.
    pub plural: &'static str,
    /// Singular.
    pub singular: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Short names, e.g. `np`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `sks`.
    pub categories: &'static [&'static str],
    /// Whether it lives in namespaces.
    pub namespaced: bool,
    /// Verbs on the resource itself: filled by the server from what its
    /// storage implements ([`verbs_of`](super::storage::verbs_of)), never declared.
    pub verbs: Vec<&'static str>,
    /// Subresources.
    pub subresources: Vec<Subresource>,
    /// `kubectl get` columns after NAME (NAME is added before them, AGE after
    /// them unless [`Column::age`] places it).
    pub columns: Vec<Column>,
    /// OpenAPI v3 schema of the object, without `apiVersion`, `kind` and `metadata`
    /// (added generically), with descriptions for `kubectl explain`.
    pub schema: Value,
    /// Field selectors supported besides `metadata.name` and `metadata.namespace`.
    pub extra_field_selectors: &'static [&'static str],
    /// Strategic merge patches are served (built-in kinds), with these list merge keys.
    pub strategic_merge: Option<super::patch::MergeKeys>,
}

impl ResourceDef {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_owned() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The kind of a list, e.g. `NodePoolList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// For errors: `nodepools.sks.exoscale.net`.
    pub fn group_resource(&self) -> super::status::GroupResource<'_> {
        super::status::GroupResource { group: self.group, resource: self.plural }
    }

    /// The subresource named `name`, if served.
    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the resource takes `verb`.
    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Field selectors a list or watch may use.
    pub fn field_selectors(&self) -> Vec<&'static str> {
        let mut out = vec!["metadata.name", "metadata.namespace"];
        out.extend_from_slice(self.extra_field_selectors);
        out
    }
}
