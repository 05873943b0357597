use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Free-form `key: value` labels carried by most resources.
pub type Labels = BTreeMap<String, String>;

/// Defines a string enum whose unknown values are kept rather than rejected,
/// because the real API may add values at any time.
#[macro_export]
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(#[doc = concat!("`", $wire, "`")] $variant,)+
            /// A value this client does not know yet, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Every known value, in declaration order.
            pub const KNOWN: &'static [&'static str] = &[$($wire),+];

            /// The value as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Unknown(raw) => raw,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(match s {
                    $($wire => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                })
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok(raw.parse().unwrap_or_else(|never| match never {}))
            }
        }
    };
}

/// A reference to another resource by id: `{"id": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ref {
    /// The referenced resource's id.
    pub id: Uuid,
}

impl From<Uuid> for Ref {
    fn from(id: Uuid) -> Self {
        Ref { id }
    }
}

/// A reference to an SSH key, which is by name rather than id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyRef {
    /// The key's name.
    pub name: String,
}

string_enum! {
    /// Who manages an instance or an instance pool.
    ManagerType { InstancePool => "instance-pool", SksNodepool => "sks-nodepool" }
}

/// The manager of a resource: an instance pool for its members, a nodepool for its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manager {
    /// The managing resource's id.
    pub id: Uuid,
    /// The managing resource's kind.
    #[serde(rename = "type")]
    pub kind: ManagerType,
}

string_enum! {
    /// How public addresses are assigned to instances.
    PublicIpAssignment { Inet4 => "inet4", Dual => "dual", None => "none" }
}

/// A zone and its API endpoint (`GET /zone`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Zone {
    /// The zone's name, e.g. `ch-gva-2`.
    pub name: String,
    /// The zonal API endpoint, including `/v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// The zone's object storage endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sos_endpoint: Option<String>,
}

/// `GET /zone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneList {
    /// The zones.
    pub zones: Vec<Zone>,
}

/// Body of the `:scale` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// The new size.
    pub size: i64,
}

/// Body of the `:evict` actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictRequest {
    /// The members to remove.
    pub instances: Vec<Uuid>,
}
