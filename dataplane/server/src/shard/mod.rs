//! A shard: one pinned glommio executor and everything it owns.
//!
//! # What lives on a shard
//! - its listeners (one `SO_REUSEPORT` socket per listener per shard) and the connections they
//!   accepted, until a connection moves to its home shard after CONNECT;
//! - the partitions it owns (`partition % shard_count`), their flushers and the sessions of the
//!   devices whose partition it owns (a device's *home*);
//! - its copy of the identity cache and the persisted MQTT sessions of its partitions.
//!
//! - the AMQP connections it accepted (they never move: a partition reader reads any
//!   partition through its shared mapping), the claims on the partitions it owns, and its
//!   read handles on every partition ([`crate::eventhub::readers`]).
//!
//! # What crosses cores
//! - connections moving home ([`mesh::ShardMessage::Adopt`]) on bounded glommio channels;
//! - partition readers' claims, releases and steals, and commit notices, posted through the
//!   [`outbox::Outbox`] on the same channels;
//! - control-plane messages (`schemas::plane`) in, connection reports out, on crossbeam
//!   channels drained by low-priority tasks;
//! - partition readers (`dataplane_log::PartitionReader`), which read committed bytes through
//!   the shared mappings.
//!
//! Nothing on a shard takes a lock: state is `Rc`/`RefCell`/`Cell`.

pub mod mesh;
pub mod outbox;
pub mod placement;
pub mod pool;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use glommio::channels::channel_mesh::Senders;
use schemas::plane::{ConnectionEvent, ControlMessage, DataplaneReport, IdentityKey};

use crate::config::DataPlaneConfig;
use crate::eventhub::readers::Readers;
use crate::ingest::PartitionOwner;
use crate::session::SessionHandle;
use crate::session::amqp::AmqpConnection;
use crate::session::persistent::SessionStore;
use crate::sync::IdentityCache;
use mesh::ShardMessage;
use outbox::Outbox;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// One shard's state. Lives in an `Rc` on its executor; never leaves it.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// How many shards there are.
    pub count: usize,
    /// The data plane's configuration (an immutable copy shared by all shards).
    pub config: Arc<DataPlaneConfig>,
    /// Names devices may put in token resources.
    pub accepted_hosts: Vec<String>,
    identities: RefCell<IdentityCache>,
    partitions: RefCell<HashMap<u32, Rc<PartitionOwner>>>,
    session_stores: RefCell<HashMap<u32, Rc<SessionStore>>>,
    sessions: RefCell<HashMap<String, Rc<SessionHandle>>>,
    reports: RefCell<Vec<ConnectionEvent>>,
    report_sender: Sender<DataplaneReport>,
    mesh: RefCell<Option<Rc<Senders<ShardMessage>>>>,
    outbox: Rc<Outbox>,
    readers: Readers,
    amqp_connections: RefCell<HashMap<u64, Weak<AmqpConnection>>>,
    next_amqp_connection: Cell<u64>,
    connections: Cell<usize>,
    stopping: Cell<bool>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Shard")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// A shard with the control plane's first snapshot applied.
    pub fn new(
        id: usize,
        count: usize,
        config: Arc<DataPlaneConfig>,
        identities: IdentityCache,
        report_sender: Sender<DataplaneReport>,
    ) -> Rc<Self> {
        let accepted_hosts = config.accepted_hosts.clone();
        let outbox = Rc::new(Outbox::new(id, count));
        Rc::new(Self {
            id,
            count,
            config,
            accepted_hosts,
            identities: RefCell::new(identities),
            partitions: RefCell::new(HashMap::new()),
            session_stores: RefCell::new(HashMap::new()),
            sessions: RefCell::new(HashMap::new()),
            reports: RefCell::new(Vec::new()),
            report_sender,
            mesh: RefCell::new(None),
            readers: Readers::new(id, count, Rc::clone(&outbox)),
            outbox,
            amqp_connections: RefCell::new(HashMap::new()),
            next_amqp_connection: Cell::new(0),
            connections: Cell::new(0),
            stopping: Cell::new(false),
        })
    }

    /// The identity cache.
    pub fn identities(&self) -> std::cell::Ref<'_, IdentityCache> {
        self.identities.borrow()
    }

    /// The partition count of the hub.
    pub fn partition_count(&self) -> u32 {
        self.identities.borrow().partition_count()
    }

    /// The shard that owns a device's partition: its home.
    pub fn home_of(&self, device_id: &str) -> (u32, usize) {
        let partition = placement::partition_of(device_id, self.partition_count());
        (partition, placement::shard_of(partition, self.count))
    }

    /// A partition this shard owns.
    pub fn partition(&self, partition: u32) -> Option<Rc<PartitionOwner>> {
        self.partitions.borrow().get(&partition).cloned()
    }

    /// Registers an opened partition.
    pub fn add_partition(&self, owner: Rc<PartitionOwner>, sessions: Rc<SessionStore>) {
        self.session_stores
            .borrow_mut()
            .insert(owner.id(), sessions);
        self.readers
            .add_to_directory(vec![(owner.id(), owner.reader())]);
        self.partitions.borrow_mut().insert(owner.id(), owner);
    }

    /// The partition readers of this shard: its Event Hubs receivers, the claims on the
    /// partitions it owns, and read handles on every partition.
    pub fn readers(&self) -> &Readers {
        &self.readers
    }

    /// Every partition this shard owns.
    pub fn partitions(&self) -> Vec<Rc<PartitionOwner>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// The persisted sessions of a partition this shard owns.
    pub fn session_store(&self, partition: u32) -> Option<Rc<SessionStore>> {
        self.session_stores.borrow().get(&partition).cloned()
    }

    /// In-flight acknowledgements across every partition of the shard.
    pub fn inflight(&self) -> usize {
        self.partitions
            .borrow()
            .values()
            .map(|partition| partition.inflight())
            .sum()
    }

    /// Registers a live session; closes the one it replaces (one connection per client id).
    pub fn register_session(&self, client_id: &str, handle: Rc<SessionHandle>) {
        let previous = self
            .sessions
            .borrow_mut()
            .insert(client_id.to_owned(), handle);
        if let Some(previous) = previous {
            previous.close("a new connection with the same client id replaced it");
        }
    }

    /// Forgets a session that ended; `false` if a newer one already replaced it.
    pub fn unregister_session(&self, client_id: &str, handle: &Rc<SessionHandle>) -> bool {
        let mut sessions = self.sessions.borrow_mut();
        if sessions
            .get(client_id)
            .is_some_and(|current| Rc::ptr_eq(current, handle))
        {
            sessions.remove(client_id);
            true
        } else {
            false
        }
    }

    /// Closes every session past its keep-alive or token expiry.
    pub fn sweep_sessions(&self, now_ms: i64) {
        for session in self.sessions.borrow().values() {
            session.close_if_expired(now_ms);
        }
    }

    /// Logs what the shard holds: connections, sessions, acknowledgements in flight and the
    /// bytes the sessions' buffers hold (TLS state comes on top: about 10 KiB a connection).
    pub fn log_stats(&self) {
        let sessions = self.sessions.borrow();
        let buffer_bytes: usize = sessions
            .values()
            .map(|session| session.buffer_bytes())
            .sum();
        tracing::info!(
            shard = self.id,
            connections = self.connection_count(),
            sessions = sessions.len(),
            inflight = self.inflight(),
            session_buffer_kib = buffer_bytes / 1024,
            buffer_kib_per_session = buffer_bytes / 1024 / sessions.len().max(1),
            "shard stats"
        );
    }

    /// Live sessions on this shard.
    pub fn session_count(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Queues a connection-state change for the next report.
    pub fn report(&self, key: IdentityKey, connected: Option<bool>, at_ms: i64) {
        self.reports.borrow_mut().push(ConnectionEvent {
            key,
            connected,
            at_ms,
        });
    }

    /// Sends what accumulated to the control plane, in one message.
    pub fn send_reports(&self) {
        let mut events = std::mem::take(&mut *self.reports.borrow_mut());
        for session in self.sessions.borrow().values() {
            if let Some(at_ms) = session.take_activity() {
                events.push(ConnectionEvent {
                    key: session.key.clone(),
                    connected: None,
                    at_ms,
                });
            }
        }
        if !events.is_empty() {
            // The control plane gone means the process is stopping; nothing to keep.
            let _ = self
                .report_sender
                .send(DataplaneReport::Connections(events));
        }
    }

    /// Applies control-plane messages; closes sessions of identities that may no longer
    /// connect.
    pub fn apply_control(&self, receiver: &Receiver<ControlMessage>) {
        while let Ok(message) = receiver.try_recv() {
            let applied = self.identities.borrow_mut().apply(&message);
            if applied.revoked.is_empty() {
                continue;
            }
            let revoked: std::collections::HashSet<_> = applied.revoked.iter().collect();
            for session in self.sessions.borrow().values() {
                if revoked.contains(&session.key) {
                    session.close("the identity was disabled, deleted or its keys changed");
                }
            }
        }
    }

    /// The mesh to other shards, once joined; starts sending what was posted.
    pub fn set_mesh(&self, senders: Senders<ShardMessage>) {
        let senders = Rc::new(senders);
        self.outbox.start(&senders);
        *self.mesh.borrow_mut() = Some(senders);
    }

    /// Acts on a message from another shard.
    pub fn handle_message(self: &Rc<Self>, message: ShardMessage) {
        let readers = &self.readers;
        match message {
            ShardMessage::Adopt(handoff) => {
                glommio::spawn_local(crate::session::mqtt::adopt(Rc::clone(self), *handoff))
                    .detach();
            }
            ShardMessage::Directory(entries) => readers.add_peer_directory(entries),
            ShardMessage::Claim(claim) => readers.handle_claim(claim),
            ShardMessage::ClaimAnswered { serial, answer } => {
                readers.handle_answer(serial, answer);
            }
            ShardMessage::Release {
                reader,
                partition,
                consumer_group,
            } => readers.handle_release(reader, partition, &consumer_group),
            ShardMessage::Steal { serial } => readers.handle_steal(serial),
            ShardMessage::Committed { partitions } => readers.handle_committed(partitions),
        }
    }

    /// Registers a live AMQP connection, so that stopping the shard closes it; returns its id.
    pub fn register_amqp(&self, connection: Weak<AmqpConnection>) -> u64 {
        let id = self.next_amqp_connection.get();
        self.next_amqp_connection.set(id + 1);
        self.amqp_connections.borrow_mut().insert(id, connection);
        id
    }

    /// Forgets an AMQP connection that ended.
    pub fn unregister_amqp(&self, id: u64) {
        self.amqp_connections.borrow_mut().remove(&id);
    }

    /// Live AMQP connections on this shard.
    pub fn amqp_connection_count(&self) -> usize {
        self.amqp_connections.borrow().len()
    }

    /// Sends a message to another shard, waiting while its inbox is full.
    pub async fn send_to(&self, shard: usize, message: ShardMessage) -> Result<(), ()> {
        let senders = self.mesh.borrow().clone();
        match senders {
            Some(senders) => senders.send_to(shard, message).await.map_err(drop),
            None => Err(()),
        }
    }

    /// Counts a connection in; `false` when the shard is at its bound.
    pub fn admit_connection(&self) -> bool {
        if self.connections.get() >= self.config.limits.connections_per_shard {
            return false;
        }
        self.connections.set(self.connections.get() + 1);
        true
    }

    /// Counts a connection out.
    pub fn release_connection(&self) {
        self.connections
            .set(self.connections.get().saturating_sub(1));
    }

    /// Connections open on this shard.
    pub fn connection_count(&self) -> usize {
        self.connections.get()
    }

    /// Starts stopping: listeners stop accepting, sessions close.
    pub fn stop(&self) {
        self.stopping.set(true);
        for session in self.sessions.borrow().values() {
            session.close("the server is shutting down");
        }
        let connections: Vec<Rc<AmqpConnection>> = self
            .amqp_connections
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for connection in connections {
            connection.shut_down("the server is shutting down");
        }
    }

    /// Whether the shard is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }
}
