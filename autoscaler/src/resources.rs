//! The three resources the simulation counts: CPU (millicores), memory (bytes)
//! and pods. Requests and capacities of every other kind (ephemeral storage,
//! hugepages, extended resources such as GPUs) are not modelled.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::de::{Deserialize, Deserializer, MapAccess};

use crate::quantity::{QuantityError, parse_milli, parse_value};
use crate::wire::{FromEntries, from_entries, skip};

/// CPU, memory and a pod count: a request, a capacity or what is left of one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_millis: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    /// Nothing.
    pub const ZERO: Resources = Resources { cpu_millis: 0, memory_bytes: 0, pods: 0 };

    /// The given amounts.
    pub const fn new(cpu_millis: i64, memory_bytes: i64, pods: i64) -> Self {
        Resources { cpu_millis, memory_bytes, pods }
    }

    /// The larger amount of each resource.
    pub fn max(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            pods: self.pods.max(other.pods),
        }
    }

    /// Whether every amount of `self` is within `available`.
    pub fn fits_in(self, available: Resources) -> bool {
        self.cpu_millis <= available.cpu_millis
            && self.memory_bytes <= available.memory_bytes
            && self.pods <= available.pods
    }
}

impl Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            pods: self.pods.saturating_add(o.pods),
        }
    }
}

impl Sub for Resources {
    type Output = Resources;
    fn sub(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(o.memory_bytes),
            pods: self.pods.saturating_sub(o.pods),
        }
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, o: Resources) {
        *self = *self + o;
    }
}

impl SubAssign for Resources {
    fn sub_assign(&mut self, o: Resources) {
        *self = *self - o;
    }
}

impl std::iter::Sum for Resources {
    fn sum<I: Iterator<Item = Resources>>(iter: I) -> Resources {
        iter.fold(Resources::ZERO, Add::add)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu={}m memory={} pods={}", self.cpu_millis, self.memory_bytes, self.pods)
    }
}

/// A Kubernetes `ResourceList` (`{"cpu": "100m", "memory": "1Gi", ...}`) as
/// read: CPU, memory and pods, and whether CPU and memory were named at all
/// (a pod-level request replaces the containers' only for what it names).
/// Every other resource is skipped unread; `null` is an empty list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ResourceList {
    pub amounts: Resources,
    pub names_cpu: bool,
    pub names_memory: bool,
}

type Parser = fn(&str) -> Result<i64, QuantityError>;

impl<'de> FromEntries<'de> for ResourceList {
    const EXPECTING: &'static str = "a map of resource names to quantities";
    fn entry<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        let (slot, parse): (&mut i64, Parser) = match name {
            "cpu" => {
                self.names_cpu = true;
                (&mut self.amounts.cpu_millis, parse_milli)
            }
            "memory" => {
                self.names_memory = true;
                (&mut self.amounts.memory_bytes, parse_value)
            }
            "pods" => (&mut self.amounts.pods, parse_value),
            _ => return skip(map),
        };
        *slot = parse(&map.next_value::<Cow<'de, str>>()?).map_err(serde::de::Error::custom)?;
        Ok(())
    }
}

impl<'de> Deserialize<'de> for ResourceList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_entries(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(default)]
        list: ResourceList,
    }

    fn read(v: serde_json::Value) -> Result<Resources, String> {
        serde_json::from_value::<Holder>(v).map(|h| h.list.amounts).map_err(|e| e.to_string())
    }

    #[test]
    fn a_resource_list_keeps_cpu_memory_and_pods() {
        let list = json!({"list": {"cpu": "1500m", "memory": "1Gi", "pods": "110",
            "ephemeral-storage": "10Gi", "hugepages-1Gi": "0", "nvidia.com/gpu": "1"}});
        assert_eq!(read(list), Ok(Resources::new(1500, 1 << 30, 110)));
        assert_eq!(read(json!({"list": null})), Ok(Resources::ZERO));
        assert_eq!(read(json!({})), Ok(Resources::ZERO));
        let named = |v| serde_json::from_value::<Holder>(v).map(|h| (h.list.names_cpu, h.list.names_memory)).unwrap();
        assert_eq!(named(json!({"list": {"cpu": "0"}})), (true, false));
        assert_eq!(named(json!({"list": {"memory": "0", "pods": "1"}})), (false, true));
    }

    #[test]
    fn a_bad_quantity_names_itself() {
        let err = read(json!({"list": {"memory": "1Qi"}})).unwrap_err();
        assert!(err.contains(r#"quantity "1Qi": unknown suffix"#), "{err}");
        // A bad quantity of a resource that is not modelled is not read at all.
        assert_eq!(read(json!({"list": {"example.com/dongle": "1Qi"}})), Ok(Resources::ZERO));
    }

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        let big = Resources::new(i64::MAX, i64::MAX, i64::MAX);
        assert_eq!(big + big, big);
        assert_eq!(Resources::new(1, 2, 3).max(Resources::new(3, 2, 1)), Resources::new(3, 2, 3));
        assert!(Resources::new(1, 1, 1).fits_in(Resources::new(1, 1, 1)));
        assert!(!Resources::new(1, 2, 1).fits_in(Resources::new(1, 1, 1)));
    }
}
