//! kube-apiserver's validation of the kinds the stand-in serves, for the
//! fields the project writes or tests: pure functions from an object (and, on
//! updates, the stored one) to the causes of a 422 `Invalid`, with
//! kube-apiserver's field paths, reasons and messages. They run after
//! defaulting and allocation, as kube-apiserver's strategies do.
//!
//! Sources: kubernetes' `pkg/apis/{core,certificates,coordination}/validation`
//! and apimachinery's `api/validation`, `util/validation`. Values in messages are
//! rendered as kube-apiserver renders them: strings quoted, numbers plain, and
//! structs as the JSON of its internal Go types (field names capitalised).

pub mod apps;
pub mod csr;
pub mod event;
pub mod lease;
pub mod meta;
pub mod names;
pub mod node;
pub mod pdb;
pub mod pod;
pub mod service;

use serde_json::{Value, json};
use sks_rest::status::Cause;

/// The causes found, in kube-apiserver's order.
pub type Causes = Vec<Cause>;

/// `field: Invalid value: <rendered>: <detail>` for a value already rendered.
pub fn invalid_rendered(field: &str, rendered: &str, detail: &str) -> Cause {
    Cause { reason: "FieldValueInvalid", message: format!("Invalid value: {rendered}: {detail}"), field: field.into() }
}

/// `field: Invalid value: "<s>": <detail>`, one cause per detail.
pub fn invalid_str(field: &str, s: &str, details: Vec<String>) -> Causes {
    details.into_iter().map(|d| Cause::invalid(field, &json!(s), d)).collect()
}

/// `field: Required value: <detail>`.
pub fn required_because(field: &str, detail: &str) -> Cause {
    Cause { reason: "FieldValueRequired", message: format!("Required value: {detail}"), field: field.into() }
}

/// `field: Duplicate value: <rendered>[: detail]`.
pub fn duplicate(field: &str, rendered: &str, detail: Option<&str>) -> Cause {
    let message = match detail {
        Some(d) => format!("Duplicate value: {rendered}: {d}"),
        None => format!("Duplicate value: {rendered}"),
    };
    Cause { reason: "FieldValueDuplicate", message, field: field.into() }
}

/// `field: Too long: may not be more than <max> bytes`.
pub fn too_long(field: &str, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooLong",
        message: format!("Too long: may not be more than {max} bytes"),
        field: field.into(),
    }
}

/// The string at `pointer`, or "" (Go's zero value) when absent or not a string.
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A string as Go's `%q` and `json.Marshal` render it in messages.
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// The items of the list at `pointer` (none when absent).
pub fn items<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}
