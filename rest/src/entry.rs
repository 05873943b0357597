//! One version of an object with its encodings (JSON, PartialObjectMetadata,
//! Table row), each made on first use and shared by every request and watch
//! that serves that version.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{Value, json};

use super::resource::ResourceDef;

/// Encodings of one version of an object, made on first use and then shared
/// by every request and watch that serves that version: a LIST of 1,000
/// unchanged objects copies bytes instead of serializing them again. A new
/// version (any write) gets a new, empty memo.
#[derive(Debug, Default)]
pub struct Memo {
    json: OnceLock<Bytes>,
    metadata: OnceLock<Bytes>,
    pub(super) row: OnceLock<Row>,
}

impl Memo {
    /// Length of the JSON encoding, once made.
    pub(super) fn json_len(&self) -> Option<usize> {
        self.json.get().map(Bytes::len)
    }

    /// Length of the PartialObjectMetadata encoding, once made.
    pub(super) fn metadata_len(&self) -> Option<usize> {
        self.metadata.get().map(Bytes::len)
    }
}

/// One version of an object with its encodings.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The object.
    pub object: Arc<Value>,
    /// Its encodings, filled on demand.
    pub memo: Arc<Memo>,
}

impl Entry {
    /// A version of `object` with an empty memo (for objects not held by a cache, e.g. a write's answer).
    pub fn new(object: Arc<Value>) -> Self {
        Entry { object, memo: Arc::default() }
    }

    /// The object as JSON.
    pub fn json(&self) -> &Bytes {
        self.memo.json.get_or_init(|| Bytes::from(serde_json::to_vec(&*self.object).expect("objects serialise")))
    }

    /// Its PartialObjectMetadata as JSON.
    pub fn metadata_json(&self) -> &Bytes {
        self.memo.metadata.get_or_init(|| {
            let meta = partial_metadata(&self.object);
            Bytes::from(serde_json::to_vec(&meta).expect("objects serialise"))
        })
    }
}

/// PartialObjectMetadata of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// The Table row of one version of an object, rendered once by the resource's
/// columns and kept in the object's [`Memo`]; only the AGE
/// cell, which changes with time, is written per request.
#[derive(Debug)]
pub struct Row {
    /// The kind whose columns rendered it (group, version, kind).
    rendered_for: (&'static str, &'static str, &'static str),
    /// `{"cells":[NAME,COLUMN...,`: the row up to its AGE cell.
    pub(super) head: Box<[u8]>,
    /// `,COLUMN...`: the cells after AGE (empty when AGE is last).
    pub(super) tail: Box<[u8]>,
    /// `metadata.creationTimestamp`, in seconds since the epoch, when it parses.
    pub(super) created: Option<i64>,
}

impl Row {
    pub(super) fn render(def: &ResourceDef, obj: &Value) -> Row {
        let mut head = b"{\"cells\":[".to_vec();
        let mut tail = Vec::new();
        let write = |head: &mut Vec<u8>, cell: &Value| {
            serde_json::to_writer(&mut *head, cell).expect("cells serialise");
            head.push(b',');
        };
        write(&mut head, &obj["metadata"]["name"]);
        let mut after_age = false;
        for c in &def.columns {
            if c.is_age() {
                after_age = true;
            } else if after_age {
                tail.push(b',');
                serde_json::to_writer(&mut tail, &(c.cell)(obj)).expect("cells serialise");
            } else {
                write(&mut head, &(c.cell)(obj));
            }
        }
        let created = obj["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(jiff::Timestamp::as_second);
        Row { rendered_for: (def.group, def.version, def.kind), head: head.into(), tail: tail.into(), created }
    }

    pub(super) fn is_for(&self, def: &ResourceDef) -> bool {
        self.rendered_for == (def.group, def.version, def.kind)
    }
}
