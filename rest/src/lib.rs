//! Generic Kubernetes-style API machinery: nothing here knows about nodepools.
//! A resource is a [`resource::ResourceDef`] plus a [`storage::Storage`]; the
//! rest (discovery, OpenAPI, tables, selectors, watch, patches, errors,
//! authentication, authorization, metrics, TLS) is shared.

pub mod authn;
pub mod authz;
pub mod body;
pub mod cache;
pub mod discovery;
pub mod entry;
pub mod handler;
pub mod kube_auth;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod request;
pub mod resource;
pub mod selector;
pub mod server;
pub mod status;
pub mod storage;
pub mod table;
pub mod tls;
pub mod watch;
