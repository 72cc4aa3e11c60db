//! The embedded store: one SQLite file in the data directory, WAL journal, full sync.
//!
//! Identity documents are stored as JSON beside the columns that queries and preconditions
//! need (etag, status). One connection behind a mutex serialises writers; SQLite would
//! serialise them anyway, and registry traffic is far below what one connection sustains.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::{DeviceCounts, Precondition, RuntimeUpdate, Store, StoreError, StoreResult};
use crate::registry::hub::HubRecord;
use crate::registry::model::{DeviceRecord, ModuleRecord, RuntimeState};

/// Bumped when the schema changes; `open` migrates older files forward.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hubs (
    name TEXT PRIMARY KEY,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    hub       TEXT NOT NULL,
    device_id TEXT NOT NULL,
    etag      TEXT NOT NULL,
    status    TEXT NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (hub, device_id)
);
CREATE TABLE IF NOT EXISTS modules (
    hub       TEXT NOT NULL,
    device_id TEXT NOT NULL,
    module_id TEXT NOT NULL,
    etag      TEXT NOT NULL,
    doc       TEXT NOT NULL,
    PRIMARY KEY (hub, device_id, module_id)
);
CREATE TABLE IF NOT EXISTS runtime (
    hub              TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    module_id        TEXT NOT NULL DEFAULT '',
    connected        INTEGER NOT NULL DEFAULT 0,
    state_updated_ms INTEGER,
    last_activity_ms INTEGER,
    c2d_count        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hub, device_id, module_id)
);
";

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SqliteStore")
            .finish_non_exhaustive()
    }
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(backend)
}

fn from_json<T: serde::de::DeserializeOwned>(doc: &str) -> StoreResult<T> {
    serde_json::from_str(doc).map_err(|error| backend(format!("corrupt record: {error}")))
}

fn time_from_ms(ms: Option<i64>) -> Option<time::OffsetDateTime> {
    ms.and_then(|ms| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    })
}

fn runtime_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RuntimeState> {
    Ok(RuntimeState {
        connected: row.get::<_, Option<i64>>(first)?.unwrap_or(0) != 0,
        connection_state_updated_time: time_from_ms(row.get(first + 1)?),
        last_activity_time: time_from_ms(row.get(first + 2)?),
        cloud_to_device_message_count: row.get::<_, Option<i64>>(first + 3)?.unwrap_or(0),
    })
}

/// Checks `precondition` against the etag currently stored (`None`: no record).
fn check(precondition: &Precondition, current_etag: Option<&str>) -> StoreResult<()> {
    match (precondition, current_etag) {
        (Precondition::MustNotExist, None) | (Precondition::MustExist, Some(_)) => Ok(()),
        (Precondition::MustNotExist, Some(_)) => Err(StoreError::AlreadyExists),
        (Precondition::MustExist | Precondition::IfMatch(_), None) => Err(StoreError::NotFound),
        (Precondition::IfMatch(wanted), Some(current)) if wanted == current => Ok(()),
        (Precondition::IfMatch(_), Some(_)) => Err(StoreError::PreconditionFailed),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let connection = Connection::open(path)
            .map_err(|error| backend(format!("{}: {error}", path.display())))?;
        Self::initialise(connection)
    }

    fn initialise(connection: Connection) -> StoreResult<Self> {
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        // FULL: an acknowledged registry write survives a power loss, like a PUT on IoT Hub.
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(backend)?;
        if version > SCHEMA_VERSION {
            return Err(backend(format!(
                "the store was written by a newer Shoal (schema {version}, this one knows {SCHEMA_VERSION})"
            )));
        }
        connection.execute_batch(SCHEMA).map_err(backend)?;
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(backend)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
        // A poisoned mutex means a panic mid-call; SQLite rolled the transaction back, so the
        // connection is still consistent and can be used.
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        work(&mut connection)
    }

    fn write<T>(&self, work: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.with(|connection| {
            let transaction = connection.transaction().map_err(backend)?;
            let result = work(&transaction)?;
            transaction.commit().map_err(backend)?;
            Ok(result)
        })
    }
}

fn device_etag(tx: &Transaction<'_>, hub: &str, device_id: &str) -> StoreResult<Option<String>> {
    tx.query_row(
        "SELECT etag FROM devices WHERE hub = ?1 AND device_id = ?2",
        params![hub, device_id],
        |row| row.get(0),
    )
    .optional()
    .map_err(backend)
}

const RUNTIME_COLUMNS: &str = "r.connected, r.state_updated_ms, r.last_activity_ms, r.c2d_count";

impl Store for SqliteStore {
    fn hub(&self, name: &str) -> StoreResult<Option<HubRecord>> {
        self.with(|connection| {
            let doc: Option<String> = connection
                .query_row("SELECT doc FROM hubs WHERE name = ?1", [name], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(backend)?;
            doc.as_deref().map(from_json).transpose()
        })
    }

    fn create_hub(&self, hub: &HubRecord) -> StoreResult<()> {
        let doc = to_json(hub)?;
        self.write(|tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO hubs (name, doc) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![hub.name, doc],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists);
            }
            Ok(())
        })
    }

    fn update_hub(&self, hub: &HubRecord) -> StoreResult<()> {
        let doc = to_json(hub)?;
        self.write(|tx| {
            let updated = tx
                .execute(
                    "UPDATE hubs SET doc = ?2 WHERE name = ?1",
                    params![hub.name, doc],
                )
                .map_err(backend)?;
            if updated == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn device(
        &self,
        hub: &str,
        device_id: &str,
    ) -> StoreResult<Option<(DeviceRecord, RuntimeState)>> {
        self.with(|connection| {
            let row = connection
                .query_row(
                    &format!(
                        "SELECT d.doc, {RUNTIME_COLUMNS} FROM devices d LEFT JOIN runtime r
                         ON r.hub = d.hub AND r.device_id = d.device_id AND r.module_id = ''
                         WHERE d.hub = ?1 AND d.device_id = ?2"
                    ),
                    params![hub, device_id],
                    |row| Ok((row.get::<_, String>(0)?, runtime_from_row(row, 1)?)),
                )
                .optional()
                .map_err(backend)?;
            row.map(|(doc, runtime)| Ok((from_json(&doc)?, runtime)))
                .transpose()
        })
    }

    fn devices(&self, hub: &str, limit: usize) -> StoreResult<Vec<(DeviceRecord, RuntimeState)>> {
        self.with(|connection| {
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT d.doc, {RUNTIME_COLUMNS} FROM devices d LEFT JOIN runtime r
                     ON r.hub = d.hub AND r.device_id = d.device_id AND r.module_id = ''
                     WHERE d.hub = ?1 ORDER BY d.device_id LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows = statement
                .query_map(params![hub, limit as i64], |row| {
                    Ok((row.get::<_, String>(0)?, runtime_from_row(row, 1)?))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (doc, runtime) = row.map_err(backend)?;
                Ok((from_json(&doc)?, runtime))
            })
            .collect()
        })
    }

    fn put_device(
        &self,
        hub: &str,
        device: &DeviceRecord,
        precondition: &Precondition,
    ) -> StoreResult<()> {
        let doc = to_json(device)?;
        let status = match device.status {
            crate::registry::model::Status::Enabled => "enabled",
            crate::registry::model::Status::Disabled => "disabled",
        };
        self.write(|tx| {
            check(
                precondition,
                device_etag(tx, hub, &device.device_id)?.as_deref(),
            )?;
            tx.execute(
                "INSERT INTO devices (hub, device_id, etag, status, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (hub, device_id) DO UPDATE SET etag = ?3, status = ?4, doc = ?5",
                params![hub, device.device_id, device.etag, status, doc],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn delete_device(
        &self,
        hub: &str,
        device_id: &str,
        precondition: &Precondition,
    ) -> StoreResult<(DeviceRecord, Vec<ModuleRecord>)> {
        self.write(|tx| {
            check(precondition, device_etag(tx, hub, device_id)?.as_deref())?;
            let doc: String = tx
                .query_row(
                    "SELECT doc FROM devices WHERE hub = ?1 AND device_id = ?2",
                    params![hub, device_id],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            let mut modules = Vec::new();
            {
                let mut statement = tx
                    .prepare("SELECT doc FROM modules WHERE hub = ?1 AND device_id = ?2")
                    .map_err(backend)?;
                let rows = statement
                    .query_map(params![hub, device_id], |row| row.get::<_, String>(0))
                    .map_err(backend)?;
                for row in rows {
                    modules.push(from_json(&row.map_err(backend)?)?);
                }
            }
            for table in ["devices", "modules", "runtime"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE hub = ?1 AND device_id = ?2"),
                    params![hub, device_id],
                )
                .map_err(backend)?;
            }
            Ok((from_json(&doc)?, modules))
        })
    }

    fn device_counts(&self, hub: &str) -> StoreResult<DeviceCounts> {
        self.with(|connection| {
            connection
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(status = 'enabled'), 0),
                            COALESCE(SUM(status = 'disabled'), 0)
                     FROM devices WHERE hub = ?1",
                    [hub],
                    |row| {
                        Ok(DeviceCounts {
                            total: row.get::<_, i64>(0)? as u64,
                            enabled: row.get::<_, i64>(1)? as u64,
                            disabled: row.get::<_, i64>(2)? as u64,
                        })
                    },
                )
                .map_err(backend)
        })
    }

    fn module(
        &self,
        hub: &str,
        device_id: &str,
        module_id: &str,
    ) -> StoreResult<Option<(ModuleRecord, RuntimeState)>> {
        self.with(|connection| {
            let row = connection
                .query_row(
                    &format!(
                        "SELECT m.doc, {RUNTIME_COLUMNS} FROM modules m LEFT JOIN runtime r
                         ON r.hub = m.hub AND r.device_id = m.device_id AND r.module_id = m.module_id
                         WHERE m.hub = ?1 AND m.device_id = ?2 AND m.module_id = ?3"
                    ),
                    params![hub, device_id, module_id],
                    |row| Ok((row.get::<_, String>(0)?, runtime_from_row(row, 1)?)),
                )
                .optional()
                .map_err(backend)?;
            row.map(|(doc, runtime)| Ok((from_json(&doc)?, runtime)))
                .transpose()
        })
    }

    fn modules(
        &self,
        hub: &str,
        device_id: &str,
    ) -> StoreResult<Vec<(ModuleRecord, RuntimeState)>> {
        self.with(|connection| {
            let exists: bool = connection
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM devices WHERE hub = ?1 AND device_id = ?2)",
                    params![hub, device_id],
                    |row| row.get(0),
                )
                .map_err(backend)?;
            if !exists {
                return Err(StoreError::NotFound);
            }
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT m.doc, {RUNTIME_COLUMNS} FROM modules m LEFT JOIN runtime r
                     ON r.hub = m.hub AND r.device_id = m.device_id AND r.module_id = m.module_id
                     WHERE m.hub = ?1 AND m.device_id = ?2 ORDER BY m.module_id"
                ))
                .map_err(backend)?;
            let rows = statement
                .query_map(params![hub, device_id], |row| {
                    Ok((row.get::<_, String>(0)?, runtime_from_row(row, 1)?))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (doc, runtime) = row.map_err(backend)?;
                Ok((from_json(&doc)?, runtime))
            })
            .collect()
        })
    }

    fn put_module(
        &self,
        hub: &str,
        module: &ModuleRecord,
        precondition: &Precondition,
    ) -> StoreResult<()> {
        let doc = to_json(module)?;
        self.write(|tx| {
            if device_etag(tx, hub, &module.device_id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            let current: Option<String> = tx
                .query_row(
                    "SELECT etag FROM modules WHERE hub = ?1 AND device_id = ?2 AND module_id = ?3",
                    params![hub, module.device_id, module.module_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend)?;
            check(precondition, current.as_deref())?;
            tx.execute(
                "INSERT INTO modules (hub, device_id, module_id, etag, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (hub, device_id, module_id) DO UPDATE SET etag = ?4, doc = ?5",
                params![hub, module.device_id, module.module_id, module.etag, doc],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn delete_module(
        &self,
        hub: &str,
        device_id: &str,
        module_id: &str,
        precondition: &Precondition,
    ) -> StoreResult<ModuleRecord> {
        self.write(|tx| {
            let current: Option<(String, String)> = tx
                .query_row(
                    "SELECT etag, doc FROM modules WHERE hub = ?1 AND device_id = ?2 AND module_id = ?3",
                    params![hub, device_id, module_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            check(precondition, current.as_ref().map(|(etag, _)| etag.as_str()))?;
            let (_, doc) = current.ok_or(StoreError::NotFound)?;
            for table in ["modules", "runtime"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE hub = ?1 AND device_id = ?2 AND module_id = ?3"
                    ),
                    params![hub, device_id, module_id],
                )
                .map_err(backend)?;
            }
            from_json(&doc)
        })
    }

    fn identities(&self, hub: &str) -> StoreResult<(Vec<DeviceRecord>, Vec<ModuleRecord>)> {
        self.with(|connection| {
            let read = |sql: &str| -> StoreResult<Vec<String>> {
                let mut statement = connection.prepare(sql).map_err(backend)?;
                let rows = statement
                    .query_map([hub], |row| row.get::<_, String>(0))
                    .map_err(backend)?;
                rows.map(|row| row.map_err(backend)).collect()
            };
            let devices = read("SELECT doc FROM devices WHERE hub = ?1")?
                .iter()
                .map(|doc| from_json(doc))
                .collect::<StoreResult<Vec<DeviceRecord>>>()?;
            let modules = read("SELECT doc FROM modules WHERE hub = ?1")?
                .iter()
                .map(|doc| from_json(doc))
                .collect::<StoreResult<Vec<ModuleRecord>>>()?;
            Ok((devices, modules))
        })
    }

    fn record_runtime(&self, hub: &str, updates: &[RuntimeUpdate]) -> StoreResult<()> {
        self.write(|tx| {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO runtime (hub, device_id, module_id, connected, state_updated_ms, last_activity_ms)
                     SELECT ?1, ?2, ?3, COALESCE(?4, 0), CASE WHEN ?4 IS NULL THEN NULL ELSE ?5 END, ?6
                     WHERE EXISTS (SELECT 1 FROM devices WHERE hub = ?1 AND device_id = ?2)
                     ON CONFLICT (hub, device_id, module_id) DO UPDATE SET
                        connected = COALESCE(?4, connected),
                        state_updated_ms = CASE WHEN ?4 IS NULL THEN state_updated_ms ELSE ?5 END,
                        last_activity_ms = COALESCE(?6, last_activity_ms)",
                )
                .map_err(backend)?;
            for update in updates {
                upsert
                    .execute(params![
                        hub,
                        update.device_id,
                        update.module_id.as_deref().unwrap_or(""),
                        update.connected.map(i64::from),
                        update.changed_ms,
                        update.last_activity_ms,
                    ])
                    .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn reset_connections(&self, hub: &str, now_ms: i64) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runtime SET connected = 0, state_updated_ms = ?2
                 WHERE hub = ?1 AND connected != 0",
                params![hub, now_ms],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn connected_count(&self, hub: &str) -> StoreResult<u64> {
        self.with(|connection| {
            connection
                .query_row(
                    "SELECT COUNT(*) FROM runtime WHERE hub = ?1 AND connected != 0",
                    [hub],
                    |row| row.get::<_, i64>(0),
                )
                .map(|count| count as u64)
                .map_err(backend)
        })
    }
}
