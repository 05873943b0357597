//! Just enough of Kubernetes' protobuf encoding for `kubectl certificate
//! approve`, whose typed client sends the CSR as protobuf: the envelope
//! (`k8s\0` + `runtime.Unknown`), ObjectMeta's identity fields and the CSR's
//! status conditions. Everything else keeps answering 415.

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use serde_json::{Map, Value, json};
use sks_rest::authn::UserInfo;
use sks_rest::body::ResponseBody;
use sks_rest::handler::{Extension, RequestBody};
use sks_rest::storage::BoxFuture;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// A protobuf field: number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// Reads the fields of one message.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err("varint too long".into())
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let (number, wire) = (tag >> 3, tag & 7);
        let field = match wire {
            0 => Field::Varint(varint(&mut buf)?),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|_| "length overflow")?;
                if len > buf.len() {
                    return Err("truncated field".into());
                }
                let (value, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(value)
            }
            1 if buf.len() >= 8 => {
                buf = &buf[8..];
                continue;
            }
            5 if buf.len() >= 4 => {
                buf = &buf[4..];
                continue;
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((number, field));
    }
    Ok(out)
}

fn string(f: &Field<'_>) -> String {
    match f {
        Field::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Field::Varint(_) => String::new(),
    }
}

fn time(f: &Field<'_>) -> Result<Value, String> {
    let Field::Bytes(b) = f else { return Ok(Value::Null) };
    let secs = fields(b)?.iter().find_map(|(n, v)| match (n, v) {
        (1, Field::Varint(s)) => Some(*s as i64),
        _ => None,
    });
    Ok(match secs.and_then(|s| jiff::Timestamp::from_second(s).ok()) {
        Some(t) => json!(t.to_string()),
        None => Value::Null,
    })
}

/// Decodes a protobuf CertificateSigningRequest (with its `k8s\0` envelope) into
/// its JSON form: name, uid, resourceVersion and status conditions.
pub fn decode_csr(body: &[u8]) -> Result<Value, String> {
    let inner = body.strip_prefix(b"k8s\0").ok_or("missing the k8s protobuf envelope")?;
    let raw = fields(inner)?
        .into_iter()
        .find_map(|(n, f)| match (n, f) {
            (2, Field::Bytes(b)) => Some(b),
            _ => None,
        })
        .ok_or("the envelope holds no object")?;
    let mut metadata = Map::new();
    let mut conditions = Vec::new();
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(meta)) => {
                for (n, f) in fields(meta)? {
                    let key = match n {
                        1 => "name",
                        5 => "uid",
                        6 => "resourceVersion",
                        _ => continue,
                    };
                    metadata.insert(key.into(), json!(string(&f)));
                }
            }
            (3, Field::Bytes(status)) => {
                for (n, f) in fields(status)? {
                    let (1, Field::Bytes(c)) = (n, f) else { continue };
                    let mut cond = Map::new();
                    for (n, f) in fields(c)? {
                        let (key, value) = match n {
                            1 => ("type", json!(string(&f))),
                            6 => ("status", json!(string(&f))),
                            2 => ("reason", json!(string(&f))),
                            3 => ("message", json!(string(&f))),
                            4 => ("lastUpdateTime", time(&f)?),
                            5 => ("lastTransitionTime", time(&f)?),
                            _ => continue,
                        };
                        cond.insert(key.into(), value);
                    }
                    conditions.push(Value::Object(cond));
                }
            }
            _ => {}
        }
    }
    Ok(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": metadata,
        "status": {"conditions": conditions},
    }))
}

/// Turns protobuf CSR approvals into JSON ones before they are served.
pub struct ProtobufApprovals;

impl Extension for ProtobufApprovals {
    fn intercept<'a>(
        &'a self,
        _user: &'a UserInfo,
        req: Request<RequestBody>,
    ) -> BoxFuture<'a, Result<Response<ResponseBody>, Request<RequestBody>>> {
        Box::pin(async move {
            let is_proto = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with(MEDIA_TYPE));
            let path = req.uri().path();
            if !is_proto
                || !path.starts_with("/apis/certificates.k8s.io/v1/certificatesigningrequests/")
                || !path.ends_with("/approval")
            {
                return Err(req);
            }
            let (mut parts, body) = req.into_parts();
            let bytes = body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
            // An undecodable body becomes one the normal path rejects with a clear 400.
            let json =
                decode_csr(&bytes).map_or_else(|e| format!("not a CertificateSigningRequest: {e}"), |v| v.to_string());
            parts.headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let body =
                http_body_util::Full::new(bytes::Bytes::from(json)).map_err(|never| match never {}).boxed_unsync();
            Err(Request::from_parts(parts, body))
        })
    }
}

/// Several extensions, consulted in order.
pub struct Chain(pub Vec<std::sync::Arc<dyn Extension>>);

impl Extension for Chain {
    fn intercept<'a>(
        &'a self,
        user: &'a UserInfo,
        mut req: Request<RequestBody>,
    ) -> BoxFuture<'a, Result<Response<ResponseBody>, Request<RequestBody>>> {
        Box::pin(async move {
            for ext in &self.0 {
                match ext.intercept(user, req).await {
                    Ok(resp) => return Ok(resp),
                    Err(back) => req = back,
                }
            }
            Err(req)
        })
    }

    fn groups(&self) -> Vec<Value> {
        self.0.iter().flat_map(|e| e.groups()).collect()
    }

    fn openapi_v3_paths(&self) -> BoxFuture<'_, Map<String, Value>> {
        Box::pin(async move {
            let mut out = Map::new();
            for ext in &self.0 {
                out.extend(ext.openapi_v3_paths().await);
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_an_approval() {
        let meta = [field(1, b"csr-1"), field(6, b"42")].concat();
        let cond = [field(1, b"Approved"), field(6, b"True"), field(2, b"ByTest")].concat();
        let status = field(1, &cond);
        let csr = [field(1, &meta), field(3, &status)].concat();
        let envelope = [b"k8s\0".to_vec(), field(2, &csr)].concat();
        let v = decode_csr(&envelope).unwrap();
        assert_eq!(v["metadata"]["name"], "csr-1");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["status"]["conditions"][0], json!({"type": "Approved", "status": "True", "reason": "ByTest"}));
        assert!(decode_csr(b"nope").is_err());
        assert!(decode_csr(&[b"k8s\0".to_vec(), vec![0x12, 0x40]].concat()).is_err(), "truncated");
    }
}
