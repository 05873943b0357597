//! CertificateSigningRequests: `ValidateCertificateSigningRequestCreate` and
//! the update, status and approval validations. The request must be a signed
//! PEM `CERTIFICATE REQUEST`, the signer a `<domain>/<path>` name, and the
//! Approved/Denied conditions may only be set through `/approval`. Which
//! usages a built-in signer accepts is the signer's business (it fails the
//! CSR), not the API's.

use base64::Engine as _;
use serde_json::{Value, json};
use sks_rest::status::Cause;
use x509_parser::prelude::FromDer as _;

use super::names;
use super::{Causes, duplicate, invalid_rendered, items, quoted, str_at};

/// The signer the v1 API refuses.
const LEGACY_SIGNER: &str = "kubernetes.io/legacy-unknown";
/// Key usages, as kube-apiserver lists them (sorted).
const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];
/// Conditions whose status may only be True.
const TRUE_ONLY: &[&str] = &["Approved", "Denied", "Failed"];

/// Which write is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A create, or an update of the object itself.
    Object,
    /// `/status`: may set the certificate.
    Status,
    /// `/approval`: may set Approved and Denied.
    Approval,
}

/// What is tolerated because the stored object already has it.
#[derive(Default)]
struct Tolerate {
    legacy_signer: bool,
    both_approved_and_denied: bool,
    duplicate_conditions: bool,
    empty_condition_type: bool,
    any_certificate: bool,
    unknown_usages: bool,
    duplicate_usages: bool,
}

impl Tolerate {
    fn of(new: &Value, old: Option<&Value>) -> Self {
        let Some(old) = old else { return Tolerate::default() };
        let types: Vec<&str> = items(old, "/status/conditions").iter().map(|c| str_at(c, "/type")).collect();
        let usages: Vec<&str> = items(old, "/spec/usages").iter().map(|u| u.as_str().unwrap_or("")).collect();
        Tolerate {
            legacy_signer: str_at(old, "/spec/signerName") == LEGACY_SIGNER,
            both_approved_and_denied: types.contains(&"Approved") && types.contains(&"Denied"),
            duplicate_conditions: has_duplicates(&types),
            empty_condition_type: types.contains(&""),
            any_certificate: new["status"]["certificate"] == old["status"]["certificate"]
                || certificate_error(str_at(old, "/status/certificate")).is_some(),
            unknown_usages: usages.iter().any(|u| !USAGES.contains(u)),
            duplicate_usages: has_duplicates(&usages),
        }
    }
}

fn has_duplicates(list: &[&str]) -> bool {
    list.iter().enumerate().any(|(i, x)| list[..i].contains(x))
}

/// ValidateCertificateSigningRequestCreate (the object after the server set its requester).
pub fn create(csr: &Value) -> Causes {
    validate(csr, &Tolerate::default())
}

/// The update validations: `write` says which path the update came through.
pub fn update(new: &Value, old: &Value, write: Write) -> Causes {
    let mut out = validate(new, &Tolerate::of(new, Some(old)));
    let count = |csr: &Value, t: &str| items(csr, "/status/conditions").iter().filter(|c| c["type"] == t).count();
    for t in ["Approved", "Denied", "Failed"] {
        if count(new, t) < count(old, t) {
            out.push(Cause::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {}", quoted(t)),
            ));
        }
    }
    if write != Write::Approval {
        for t in ["Approved", "Denied"] {
            let of = |csr: &Value| -> Vec<Value> {
                items(csr, "/status/conditions").iter().filter(|c| c["type"] == t).cloned().collect()
            };
            let (before, after) = (of(old), of(new));
            if after.len() > before.len() {
                out.push(Cause::forbidden(
                    "status.conditions",
                    format!("updates may not add a condition of type {}", quoted(t)),
                ));
            } else if after.len() == before.len() && after != before {
                // kube-apiserver appends a diff of the conditions, left out here.
                out.push(Cause::forbidden(
                    "status.conditions",
                    format!("updates may not modify a condition of type {}", quoted(t)),
                ));
            }
        }
    }
    if new["status"]["certificate"] != old["status"]["certificate"] {
        if write != Write::Status {
            out.push(Cause::forbidden("status.certificate", "updates may not set certificate content"));
        } else if !str_at(old, "/status/certificate").is_empty() {
            out.push(Cause::forbidden("status.certificate", "updates may not modify existing certificate content"));
        }
    }
    out
}

fn validate(csr: &Value, tolerate: &Tolerate) -> Causes {
    let mut out = Vec::new();
    if let Some(err) = request_error(&csr["spec"]["request"]) {
        let rendered = match &csr["spec"]["request"] {
            Value::String(s) => quoted(s),
            _ => "null".to_owned(),
        };
        out.push(invalid_rendered("spec.request", &rendered, &err));
    }
    let usages = items(csr, "/spec/usages");
    if usages.is_empty() {
        out.push(Cause::required("spec.usages"));
    }
    for (i, u) in usages.iter().enumerate() {
        let u = u.as_str().unwrap_or("");
        if !tolerate.unknown_usages && !USAGES.contains(&u) {
            out.push(Cause::not_supported(&format!("spec.usages[{i}]"), &json!(u), USAGES));
        }
    }
    if !tolerate.duplicate_usages {
        for (i, u) in usages.iter().enumerate() {
            if usages[..i].contains(u) {
                out.push(duplicate(&format!("spec.usages[{i}]"), &u.to_string(), None));
            }
        }
    }
    let signer = str_at(csr, "/spec/signerName");
    if signer == LEGACY_SIGNER && !tolerate.legacy_signer {
        out.push(Cause::invalid(
            "spec.signerName",
            &json!(signer),
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        out.extend(signer_name("spec.signerName", signer));
    }
    if let Some(s) = csr["spec"]["expirationSeconds"].as_i64().filter(|s| *s < 600) {
        out.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(s),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    out.extend(conditions(csr, tolerate));
    if !tolerate.any_certificate
        && let Some(err) = certificate_error(str_at(csr, "/status/certificate"))
    {
        out.push(Cause::invalid("status.certificate", &json!("<certificate data>"), err));
    }
    out
}

fn conditions(csr: &Value, tolerate: &Tolerate) -> Causes {
    let mut out = Vec::new();
    let (mut approved, mut denied) = (false, false);
    let mut seen = Vec::new();
    for (i, c) in items(csr, "/status/conditions").iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        let (type_, status) = (str_at(c, "/type"), str_at(c, "/status"));
        if !tolerate.empty_condition_type && type_.is_empty() {
            out.push(Cause::required(&format!("{path}.type")));
        }
        let allowed: &[&str] = if TRUE_ONLY.contains(&type_) { &["True"] } else { &["False", "True", "Unknown"] };
        if status.is_empty() {
            out.push(Cause::required(&format!("{path}.status")));
        } else if !allowed.contains(&status) {
            out.push(Cause::not_supported(&format!("{path}.status"), &json!(status), allowed));
        }
        if !tolerate.both_approved_and_denied {
            let clash = match type_ {
                "Approved" => {
                    approved = true;
                    denied
                }
                "Denied" => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if clash {
                out.push(Cause::invalid(
                    &format!("{path}.type"),
                    &json!(type_),
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
        }
        if !tolerate.duplicate_conditions {
            if seen.contains(&type_) {
                out.push(duplicate(&format!("{path}.type"), &quoted(type_), None));
            }
            seen.push(type_);
        }
    }
    out
}

/// ValidateSignerName: `<domain>/<path>`, the domain at least two DNS labels.
pub fn signer_name(field: &str, signer: &str) -> Causes {
    if signer.is_empty() {
        return vec![Cause::required(field)];
    }
    let segments: Vec<&str> = signer.split('/').collect();
    let [domain, path] = segments.as_slice() else {
        return vec![Cause::invalid(
            field,
            &json!(signer),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        )];
    };
    let mut out = Vec::new();
    if domain.len() > names::DNS1123_SUBDOMAIN_MAX {
        out.push(super::too_long(field, names::DNS1123_SUBDOMAIN_MAX));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some((label, errs)) = labels.iter().map(|l| (l, names::dns1123_label(l))).find(|(_, e)| !e.is_empty()) {
        for e in errs {
            out.push(Cause::invalid(field, &json!(domain), format!("validating label {}: {e}", quoted(label))));
        }
    }
    if labels.len() < 2 {
        out.push(Cause::invalid(
            field,
            &json!(domain),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if let Some((label, errs)) = path.split('.').map(|l| (l, names::dns1123_subdomain(l))).find(|(_, e)| !e.is_empty())
    {
        for e in errs {
            out.push(Cause::invalid(field, &json!(path), format!("validating label {}: {e}", quoted(label))));
        }
    }
    let max = 2 * names::DNS1123_SUBDOMAIN_MAX + names::DNS1123_LABEL_MAX + 2;
    if signer.len() > max {
        out.push(super::too_long(field, max));
    }
    out
}

/// Why `request` (base64 in JSON) is not a signed PEM certificate request, in Go's words where they are known.
fn request_error(request: &Value) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(request.as_str().unwrap_or("")).unwrap_or_default();
    let pem = match x509_parser::pem::parse_x509_pem(&bytes) {
        Ok((_, pem)) if pem.label == "CERTIFICATE REQUEST" => pem,
        _ => return Some("PEM block type must be CERTIFICATE REQUEST".to_owned()),
    };
    let Ok((_, csr)) = x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents) else {
        return Some("x509: malformed certificate request".to_owned());
    };
    csr.verify_signature().err().map(|_| "x509: signature on the certificate request is invalid".to_owned())
}

/// Why `certificate` (base64 in JSON) is not a bundle of PEM certificates; nothing for an empty one.
fn certificate_error(certificate: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(certificate).unwrap_or_default();
    if bytes.is_empty() {
        return None;
    }
    let mut blocks = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let Ok(pem) = pem else { break };
        if pem.label != "CERTIFICATE" {
            return Some(format!("only CERTIFICATE PEM blocks are allowed, found {}", quoted(&pem.label)));
        }
        if x509_parser::parse_x509_certificate(&pem.contents).is_err() {
            return Some("x509: malformed certificate".to_owned());
        }
        blocks += 1;
    }
    (blocks == 0).then(|| "must contain at least one CERTIFICATE PEM block".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(c: Causes) -> Vec<String> {
        c.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn request() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = rcgen::CertificateParams::new(vec!["n1".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    fn csr(signer: &str, request: &str) -> Value {
        json!({"metadata": {"name": "c"}, "spec": {"request": request, "signerName": signer, "usages": ["server auth"]}})
    }

    #[test]
    fn requests_and_signers() {
        assert_eq!(create(&csr("kubernetes.io/kubelet-serving", &request())), []);
        assert_eq!(
            messages(create(&csr("kubelet-serving", "bm90IGEgcmVxdWVzdA=="))),
            [
                "spec.request: Invalid value: \"bm90IGEgcmVxdWVzdA==\": PEM block type must be CERTIFICATE REQUEST",
                "spec.signerName: Invalid value: \"kubelet-serving\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
            ]
        );
        assert_eq!(messages(signer_name("f", "")), ["f: Required value"]);
        assert_eq!(
            messages(signer_name("f", "example/x")),
            ["f: Invalid value: \"example\": should be a domain with at least two segments separated by dots"]
        );
    }

    #[test]
    fn approval_conditions() {
        let mut c = csr("example.com/x", &request());
        let old = c.clone();
        c["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "False"}]});
        assert_eq!(
            messages(update(&c, &old, Write::Approval)),
            [
                "status.conditions[1].status: Unsupported value: \"False\": supported values: \"True\"",
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
            ]
        );
        c["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        assert_eq!(update(&c, &old, Write::Approval), []);
        assert_eq!(
            messages(update(&c, &old, Write::Status)),
            ["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]
        );
    }
}
