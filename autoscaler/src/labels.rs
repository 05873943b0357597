//! A compact string map for labels and node selectors: a sorted boxed slice,
//! 16 bytes inline and no per-entry tree nodes, since the shell caches the
//! labels of every pod of the cluster.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess};

use crate::wire::{FromEntries, from_entries};

/// Labels (or a `nodeSelector`), sorted by key, keys unique.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Labels::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &*self.0[i].1)
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The labels, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Whether every label of `self` is on `other` with the same value.
    pub fn is_subset_of(&self, other: &Labels) -> bool {
        self.iter().all(|(k, v)| other.get(k) == Some(v))
    }

    /// These labels with `key` set to `value`.
    pub fn with(self, key: &str, value: &str) -> Labels {
        self.iter().filter(|(k, _)| *k != key).chain([(key, value)]).collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    /// The last value of a repeated key wins, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut entries: Vec<(Box<str>, Box<str>)> =
            iter.into_iter().map(|(k, v)| (Box::from(k.as_ref()), Box::from(v.as_ref()))).collect();
        // A stable sort keeps repeated keys in input order; keep the last of each.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match unique.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => unique.push(entry),
            }
        }
        Labels(unique.into_boxed_slice())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The entries of a labels object, before sorting.
#[derive(Default)]
struct Entries(Vec<(String, String)>);

impl<'de> FromEntries<'de> for Entries {
    const EXPECTING: &'static str = "a map of strings";
    fn entry<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        self.0.push((key.to_owned(), map.next_value()?));
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Labels {
    /// From a JSON object of strings; `null` is no labels.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(from_entries::<D, Entries>(deserializer)?.0.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_looked_up_by_key() {
        let labels: Labels = [("b", "2"), ("a", "1"), ("c", "3"), ("a", "again")].into_iter().collect();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels.get("a"), Some("again"), "the last value of a repeated key wins");
        assert_eq!(labels.get("c"), Some("3"));
        assert_eq!(labels.get("d"), None);
        assert_eq!(labels.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(labels.clone().with("b", "two").get("b"), Some("two"));
        assert_eq!(labels.clone().with("z", "26").len(), 4);
    }

    #[test]
    fn subsets_compare_values() {
        let node: Labels = [("zone", "a"), ("disk", "ssd")].into_iter().collect();
        let wanted: Labels = [("disk", "ssd")].into_iter().collect();
        let other: Labels = [("disk", "hdd")].into_iter().collect();
        assert!(wanted.is_subset_of(&node));
        assert!(Labels::new().is_subset_of(&node));
        assert!(!other.is_subset_of(&node));
        assert!(!node.is_subset_of(&wanted));
    }

    #[test]
    fn labels_decode_from_json_objects_and_null() {
        let labels: Labels = serde_json::from_value(json!({"app": "web", "tier": "front"})).unwrap();
        assert_eq!(labels.get("tier"), Some("front"));
        assert!(serde_json::from_value::<Labels>(json!(null)).unwrap().is_empty());
        assert!(serde_json::from_value::<Labels>(json!(["a"])).is_err());
        assert!(serde_json::from_value::<Labels>(json!({"a": 1})).is_err());
    }
}
