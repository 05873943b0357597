//! Decoding helpers the slim types share: a JSON object read entry by entry,
//! keeping what the type wants and skipping the rest unread (annotations such
//! as kubectl's last-applied copy are never allocated), `null` and absent
//! meaning empty.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// A value built from a JSON object one entry at a time.
pub(crate) trait FromEntries<'de>: Default {
    /// What the object holds, for error messages.
    const EXPECTING: &'static str;

    /// Takes the entry `key`, consuming its value (read or [`skip`]ped).
    fn entry<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

/// Reads a `T` from a JSON object, or the default from `null`.
pub(crate) fn from_entries<'de, D: Deserializer<'de>, T: FromEntries<'de>>(d: D) -> Result<T, D::Error> {
    struct EntriesVisitor<T>(PhantomData<T>);
    impl<'de, T: FromEntries<'de>> Visitor<'de> for EntriesVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }
        fn visit_unit<E>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_none<E>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let mut out = T::default();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                out.entry(&key, &mut map)?;
            }
            Ok(out)
        }
    }
    d.deserialize_option(EntriesVisitor(PhantomData))
}

/// Skips an entry's value unread.
pub(crate) fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

/// Decodes `null` or an absent list as empty.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Box<[T]>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default().into_boxed_slice())
}

/// An API object as the slim types read it: `M`etadata, `S`pec and `T`atus
/// each as the type wants them, each defaulted when absent.
#[derive(Deserialize)]
#[serde(bound(
    deserialize = "M: Deserialize<'de> + Default, S: Deserialize<'de> + Default, T: Deserialize<'de> + Default"
))]
pub(crate) struct ObjectWire<M, S, T> {
    #[serde(default)]
    pub metadata: M,
    #[serde(default)]
    pub spec: S,
    #[serde(default)]
    pub status: T,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Counts the entries, reads `keep`, skips the rest.
    #[derive(Default, Debug, PartialEq)]
    struct Picky {
        seen: usize,
        keep: Option<String>,
    }

    impl<'de> FromEntries<'de> for Picky {
        const EXPECTING: &'static str = "a picky map";
        fn entry<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
            self.seen += 1;
            match key {
                "keep" => self.keep = Some(map.next_value()?),
                _ => skip(map)?,
            }
            Ok(())
        }
    }

    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            from_entries(d)
        }
    }

    #[test]
    fn objects_are_read_entry_by_entry_and_null_is_empty() {
        let read = |v| serde_json::from_value::<Picky>(v);
        assert_eq!(
            read(json!({"keep": "x", "other": {"deep": [1, 2]}})).unwrap(),
            Picky { seen: 2, keep: Some("x".into()) }
        );
        assert_eq!(read(json!(null)).unwrap(), Picky::default());
        let err = read(json!([1])).unwrap_err().to_string();
        assert!(err.contains("a picky map"), "{err}");
    }
}
