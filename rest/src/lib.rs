//! Generic Kubernetes-style API machinery: nothing here knows about nodepools.
//! A resource is a [`resource::ResourceDef`] plus a [`storage::Storage`]
//! (with the capabilities it implements, and a [`strategy::Strategy`] for its
//! writes); the rest is shared: the HTTP layer ([`handler`]), one write
//! pipeline ([`write`]) with apimachinery's rules ([`validation`]),
//! discovery, OpenAPI, tables, selectors, watch, patches, Status errors,
//! authentication, authorization, metrics, TLS, and an in-memory storage
//! ([`memory`]) for the Kubernetes API stand-in.

pub mod authn;
pub mod authz;
pub mod body;
pub mod cache;
pub mod context;
pub mod deletion;
pub mod discovery;
pub mod entry;
pub mod handler;
pub mod kube_auth;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod request;
pub mod resource;
pub mod selector;
pub mod server;
pub mod status;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;
pub mod write;
