//! The reads: get, list and watch, all served from the storage's cache.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::respond::{TABLE_CONTENT_TYPE, bytes_response, list_json, render_with};
use super::{ApiServer, Call};
use crate::body::{ResponseBody, stream};
use crate::entry::Entry;
use crate::request::{Query, ResourcePath};
use crate::resource::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::table::{Format, table};
use crate::watch::{self, Filter, Start, WatchParams};

impl ApiServer {
    /// One object, from the cache.
    pub(super) fn get(&self, call: &Call<'_>) -> ApiResult<Response<ResponseBody>> {
        let entry = call
            .storage
            .cache()
            .get_entry(&call.key())
            .ok_or_else(|| ApiError::not_found(call.def.group_resource(), call.name()))?;
        Ok(render_with(call.def, &entry, call.format, StatusCode::OK))
    }

    fn filter(def: &ResourceDef, path: &ResourcePath, query: &Query) -> ApiResult<Filter> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), &def.field_selectors())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Filter { namespace: path.namespace.clone(), labels, fields })
    }

    /// Lists, from the cache: only objects changed since the last read are encoded again.
    pub(super) fn list(&self, call: &Call<'_>) -> ApiResult<Response<ResponseBody>> {
        let Call { storage, def, path, query, format, .. } = *call;
        if query.get("sendInitialEvents").is_some() {
            return Err(ApiError::new(422, "Invalid", "sendInitialEvents is forbidden for list"));
        }
        if query.get("continue").is_some_and(|c| !c.is_empty()) {
            return Err(ApiError::expired(
                "the provided continue parameter is too old to display a consistent list result",
            ));
        }
        let filter = Self::filter(def, path, query)?;
        let (entries, rv) = match (filter.fields.exact("metadata.name"), &path.namespace) {
            // `metadata.name=x` (kubectl wait, delete --wait) needs one lookup, not a scan.
            (Some(name), ns) => {
                let key = (ns.clone().unwrap_or_default(), name.to_owned());
                (storage.cache().get_entry(&key).into_iter().collect(), storage.cache().current_rv())
            }
            _ => storage.cache().snapshot_entries(),
        };
        let all = filter.selects_all();
        let items: Vec<&Entry> = entries.iter().filter(|e| all || filter.matches(&e.object)).collect();
        let rv = rv.to_string();
        // Every item's encoding comes from its memo: only objects changed since the last read are serialized.
        Ok(match format {
            Format::Table(include) => {
                bytes_response(StatusCode::OK, table(def, &items, &rv, include, true), TABLE_CONTENT_TYPE)
            }
            Format::Metadata => {
                let encoded: Vec<&Bytes> = items.iter().map(|e| e.metadata_json()).collect();
                let body = list_json("meta.k8s.io/v1", "PartialObjectMetadataList", &rv, &encoded);
                bytes_response(StatusCode::OK, body, "application/json")
            }
            Format::Json => {
                let encoded: Vec<&Bytes> = items.iter().map(|e| e.json()).collect();
                let body = list_json(&def.api_version(), &def.list_kind(), &rv, &encoded);
                bytes_response(StatusCode::OK, body, "application/json")
            }
        })
    }

    /// Streams changes from the cache, with bookmarks, until the timeout.
    pub(super) fn watch(&self, call: &Call<'_>) -> ApiResult<Response<ResponseBody>> {
        let Call { storage, def, path, query, format, .. } = *call;
        if query.get("sendInitialEvents").is_some() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
            ));
        }
        let filter = Self::filter(def, path, query)?;
        let start = match query.get("resourceVersion") {
            None | Some("") | Some("0") => Start::Now,
            Some(rv) => match rv.parse::<u64>() {
                Ok(n) => Start::After(n),
                // Not one of ours at all: the client must relist.
                Err(_) => Start::After(0),
            },
        };
        let timeout = match query.get("timeoutSeconds").map(str::parse::<u64>) {
            Some(Ok(s)) => Duration::from_secs(s).min(self.config.max_watch_timeout),
            Some(Err(_)) => return Err(ApiError::bad_request("timeoutSeconds: must be a non-negative integer")),
            None => {
                // Spread reconnections as kube-apiserver does: between the max and twice... of half of it.
                let half = self.config.max_watch_timeout / 2;
                half + half.mul_f64(rand::random::<f64>())
            }
        };
        let params = WatchParams {
            start,
            filter,
            bookmarks: query.flag("allowWatchBookmarks")?,
            timeout,
            bookmark_interval: self.config.bookmark_interval,
            format,
        };
        let rx = watch::start(storage.cache().clone(), def.clone(), params);
        let gauge = self.metrics.watches.with_label_values(&[def.plural]);
        gauge.inc();
        struct Open(prometheus::IntGauge);
        impl Drop for Open {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        let mut resp = Response::new(stream(rx, Some(Box::new(Open(gauge)))));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
        Ok(resp)
    }
}
