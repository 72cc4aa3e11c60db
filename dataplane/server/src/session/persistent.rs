//! Persistent MQTT sessions (clean session 0): each client id's subscriptions survive
//! reconnects and restarts, because the device SDK never subscribes again after a reconnect.
//!
//! Subscriptions change rarely (once per feature a device uses), so each partition keeps its
//! clients' subscriptions in one small JSON file, rewritten whole (temporary file, fsync,
//! rename) on a blocking thread whenever one changes. A subscription whose write has not
//! finished when the process dies is lost; the device's next SUBSCRIBE restores it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::rc::Rc;

use dataplane_wire::iothub::Subscription;

/// A set of [`Subscription`]s as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SubscriptionSet(u8);

impl SubscriptionSet {
    fn bit(subscription: Subscription) -> u8 {
        match subscription {
            Subscription::CloudToDevice => 1,
            Subscription::ModuleInputs => 2,
            Subscription::MethodRequests => 4,
            Subscription::TwinResponses => 8,
            Subscription::DesiredPatches => 16,
        }
    }

    /// Adds one.
    pub fn insert(&mut self, subscription: Subscription) {
        self.0 |= Self::bit(subscription);
    }

    /// Removes one.
    pub fn remove(&mut self, subscription: Subscription) {
        self.0 &= !Self::bit(subscription);
    }
}

/// The persisted sessions of one partition's clients.
#[derive(Debug)]
pub struct SessionStore {
    path: PathBuf,
    sessions: RefCell<BTreeMap<String, SubscriptionSet>>,
    /// A write is running; another change while it runs schedules one more.
    writing: Cell<bool>,
    dirty: Cell<bool>,
}

impl SessionStore {
    /// Loads `path` (missing: no sessions). A corrupt file is reported and ignored: losing
    /// subscriptions is recoverable (the device subscribes again), refusing to start is not.
    pub fn load(path: PathBuf) -> Self {
        let sessions = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable session file");
                BTreeMap::new()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable session file");
                BTreeMap::new()
            }
        };
        Self {
            path,
            sessions: RefCell::new(sessions),
            writing: Cell::new(false),
            dirty: Cell::new(false),
        }
    }

    /// The persisted session of a client, if any.
    pub fn get(&self, client_id: &str) -> Option<SubscriptionSet> {
        self.sessions.borrow().get(client_id).copied()
    }

    /// Stores (or, with `None`, forgets) a client's session and writes the file behind.
    pub fn set(self: &Rc<Self>, client_id: &str, session: Option<SubscriptionSet>) {
        let changed = {
            let mut sessions = self.sessions.borrow_mut();
            match session {
                Some(session) => sessions.insert(client_id.to_owned(), session) != Some(session),
                None => sessions.remove(client_id).is_some(),
            }
        };
        if changed {
            self.dirty.set(true);
            self.write_behind();
        }
    }

    fn write_behind(self: &Rc<Self>) {
        if self.writing.get() || !self.dirty.get() {
            return;
        }
        // An empty file would forget every session at the next start: never write one.
        let contents = match serde_json::to_vec(&*self.sessions.borrow()) {
            Ok(contents) => contents,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "could not encode MQTT sessions");
                return;
            }
        };
        self.writing.set(true);
        self.dirty.set(false);
        let path = self.path.clone();
        let store = Rc::clone(self);
        glommio::spawn_local(async move {
            let result = glommio::executor()
                .spawn_blocking(move || write_atomically(&path, &contents))
                .await;
            if let Err(error) = result {
                tracing::warn!(path = %store.path.display(), %error, "could not persist MQTT sessions");
            }
            store.writing.set(false);
            store.write_behind();
        })
        .detach();
    }
}

fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
