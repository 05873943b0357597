//! Durable state on disk.
//!
//! redb rather than SQLite: the zone stores opaque JSON records by key, which
//! needs no SQL; redb is pure Rust (no C build in CI), its commits are atomic
//! and fsynced before they return (copy-on-write B-trees, so a `kill -9` at any
//! moment leaves the last committed transaction intact), and one write
//! transaction can carry every record a request touched.

use std::path::Path;

use anyhow::Context as _;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

/// The zone's database: one table of JSON records keyed by `<scope>/<kind>/<id>`.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Database::create(path).with_context(|| format!("opening state database {}", path.display()))?;
        let tx = db.begin_write()?;
        tx.open_table(OBJECTS)?;
        tx.commit()?;
        Ok(Store { db })
    }

    /// Every record, in key order.
    pub fn load(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes and deletes records in one durable transaction.
    pub fn commit(&self, changes: &[(String, Option<Vec<u8>>)]) -> anyhow::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(OBJECTS)?;
            for (key, value) in changes {
                match value {
                    Some(bytes) => {
                        table.insert(key.as_str(), bytes.as_slice())?;
                    }
                    None => {
                        table.remove(key.as_str())?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
