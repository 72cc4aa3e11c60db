//! An AMQP 1.0 connection to the Event Hubs-compatible endpoint, on the shard that accepted
//! it.
//!
//! ```text
//!  accept ─▶ TLS handshake ─▶ two tasks sharing one AmqpConnection (Rc, RefCells)
//!
//!  reader task: socket ─▶ TLS ─▶ Connection::handle_bytes ─▶ events ─▶ wake the writer
//!                 SASL decision, $cbs put-token, $management READ, receiver attach (claim)
//!  writer task: woken by the reader, by the shard (claim answered, stolen, partition
//!               committed) or by the clock (heartbeat, idle time-out, token expiry)
//!                 ─▶ notices ─▶ handle_timeout ─▶ events ─▶ pump readers ─▶ one socket write
//! ```
//!
//! The protocol (frames, SASL, sessions, links, credit, management nodes) is the sans-IO
//! [`dataplane_amqp::Connection`]; this task owns the socket, the clock, the authorization
//! state and the partition cursors. The connection never moves to another shard: a reader
//! reads any partition through its shared mapping, so serving it here costs the partition's
//! owner nothing but a wake-up notice per flush.
//!
//! Pumping is bounded: at most [`PUMP_EVENTS_MAX`] events are encoded before the socket write
//! and a yield, so one fast reader cannot hold the shard.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{AsRawFd as _, RawFd};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane_amqp::address::NodeAddress;
use dataplane_amqp::management::{ManagementNode, ManagementRequest, PutToken, ReadRequest};
use dataplane_amqp::sasl::{Mechanism, SaslInit, SaslOutcome};
use dataplane_amqp::{CloseReason, Condition, Config, Connection, Event, LinkId, ReceiverAttach};
use dataplane_log::{Cursor, PartitionReader};
use dataplane_wire::bytes::BytesMut;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use crate::eventhub::cbs::{self, Scope};
use crate::eventhub::encode::{EventEncoder, LastEnqueued};
use crate::eventhub::ownership::{ClaimAnswer, READERS_PER_GROUP_MAX};
use crate::eventhub::readers::ReaderListener;
use crate::eventhub::{management, start_position};
use crate::listener::transport::{Pipe, ReadPipe, SOCKET_READ_BYTES, WritePipe};
use crate::shard::{Shard, now_ms};

/// Events encoded per round before the socket write and a yield to other tasks.
pub const PUMP_EVENTS_MAX: usize = 256;

/// After our `close`, how long the peer has to close its side before the socket is cut.
const LINGER: Duration = Duration::from_secs(2);

/// How often attached receivers are checked against the hub's consumer groups: a receiver
/// of a deleted group is detached within this time.
const GROUP_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes of output waiting for the writer above which the reader stops reading.
const OUTPUT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Serves an AMQP connection accepted on this shard, to its end.
pub async fn serve_accepted(shard: Rc<Shard>, stream: TcpStream, tls: Option<Arc<ServerConfig>>) {
    if !shard.admit_connection() {
        tracing::warn!(
            shard = shard.id,
            "AMQP connection refused: the shard is at its connection bound"
        );
        return;
    }
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let socket = stream.as_raw_fd();
    let tls = match tls.map(ServerConnection::new).transpose() {
        Ok(tls) => tls,
        Err(error) => {
            tracing::warn!(%error, "cannot start TLS for an AMQP connection");
            shard.release_connection();
            return;
        }
    };
    let mut pipe = Pipe::new(stream, tls);
    match pipe.handshake(shard.config.limits.connect_timeout).await {
        Ok(()) => run(&shard, pipe, socket).await,
        Err(error) => tracing::debug!(?peer, %error, "AMQP connection ended in the TLS handshake"),
    }
    shard.release_connection();
}

/// The connection's limits: the crate's defaults, which bound everything per connection.
fn connection_config(shard: &Shard) -> Config {
    Config {
        container_id: format!("shoal-{}", shard.identities().hub_name()),
        ..Config::default()
    }
}

async fn run(shard: &Rc<Shard>, pipe: Pipe, socket: RawFd) {
    let (wake, wakes) = local_channel::new_bounded(1);
    let (space, space_wakes) = local_channel::new_bounded(1);
    let connection = Rc::new(AmqpConnection {
        shard: Rc::clone(shard),
        id: Cell::new(0),
        connection: RefCell::new(Connection::new(connection_config(shard), Instant::now())),
        grants: RefCell::new(Grants::default()),
        links: RefCell::new(Vec::new()),
        notices: RefCell::new(Vec::new()),
        encoder: RefCell::new(EventEncoder::default()),
        scratch: RefCell::new(Vec::with_capacity(4096)),
        rounds: Cell::new(0),
        groups_checked: Cell::new(Instant::now()),
        wake,
        space,
    });
    connection
        .id
        .set(shard.register_amqp(Rc::downgrade(&connection)));
    let (reader, writer) = pipe.split();
    let reader_task = glommio::spawn_local(read_loop(Rc::clone(&connection), reader, space_wakes));
    connection.write_loop(writer, &wakes).await;
    // Our side is closed and flushed; give the peer a moment to close its own, so that it
    // reads our `close` before the socket goes.
    let linger = if shard.is_stopping() {
        Duration::from_millis(100)
    } else {
        LINGER
    };
    futures_lite::future::or(reader_task, async {
        glommio::timer::sleep(linger).await;
        // SAFETY: shutdown(2) on the connection's descriptor, which the pipe halves keep open
        // until this function returns; it ends the reader's pending read.
        unsafe {
            libc::shutdown(socket, libc::SHUT_RDWR);
        }
    })
    .await;
    connection.release_all();
    shard.unregister_amqp(connection.id.get());
}

async fn read_loop(connection: Rc<AmqpConnection>, mut reader: ReadPipe, space: LocalReceiver<()>) {
    let mut input = BytesMut::with_capacity(SOCKET_READ_BYTES);
    loop {
        input.clear();
        let read = reader.read_plaintext(&mut input).await;
        let open = matches!(read, Ok(true));
        {
            let mut protocol = connection.connection.borrow_mut();
            if open {
                protocol.handle_bytes(&input, Instant::now());
            } else {
                protocol.handle_eof();
            }
        }
        connection.handle_events();
        connection.wake_writer();
        if !open {
            return;
        }
        // A peer that sends without reading our answers waits here, not in our memory.
        while connection.connection.borrow().pending_transmit() > OUTPUT_BYTES_MAX {
            if space.recv().await.is_none() {
                return;
            }
        }
    }
}

/// Consumer groups a connection may hold live tokens for. IoT Hub allows 20 consumer groups
/// per endpoint; the bound keeps a client that puts tokens for made-up groups (each needs a
/// ServiceConnect key) from growing the connection's memory without end.
const GROUP_GRANTS_MAX: usize = 256;

/// What the connection's tokens (or its PLAIN login) allow, and until when.
#[derive(Debug, Default)]
struct Grants {
    /// A PLAIN login with a policy key: everything, for the life of the connection.
    plain: bool,
    /// The hub (and every consumer group under it), until this time (Unix seconds).
    hub_until: Option<u64>,
    /// Consumer groups (lower-cased), each until its time.
    groups: HashMap<String, u64>,
}

impl Grants {
    /// Records a granted token; refused (with the reason) when the connection already holds
    /// live tokens for [`GROUP_GRANTS_MAX`] other consumer groups.
    fn add(&mut self, grant: cbs::Grant, now_secs: u64) -> Result<(), String> {
        // A refreshed token replaces the previous one's expiry.
        match grant.scope {
            Scope::Hub => self.hub_until = Some(grant.expiry_secs),
            Scope::ConsumerGroup(group) => {
                if !self.groups.contains_key(&group) && self.groups.len() >= GROUP_GRANTS_MAX {
                    self.groups.retain(|_, until| *until > now_secs);
                    if self.groups.len() >= GROUP_GRANTS_MAX {
                        return Err(format!(
                            "this connection already holds tokens for {GROUP_GRANTS_MAX} consumer groups"
                        ));
                    }
                }
                self.groups.insert(group, grant.expiry_secs);
            }
        }
        Ok(())
    }

    /// Until when the hub may be read, if it may be now.
    fn hub(&self, now_secs: u64) -> Option<u64> {
        if self.plain {
            return Some(u64::MAX);
        }
        self.hub_until.filter(|until| *until > now_secs)
    }

    /// Until when a consumer group may be read, if it may be now.
    fn group(&self, group: &str, now_secs: u64) -> Option<u64> {
        let group_until = self
            .groups
            .get(group)
            .copied()
            .filter(|until| *until > now_secs);
        match (self.hub(now_secs), group_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What the shard told the connection, to act on in the writer task.
#[derive(Debug, Clone, Copy)]
enum Notice {
    Answered(u64, ClaimAnswer),
    Stolen(u64),
    ShutDown(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the owner's answer; the attach is not answered yet.
    Claiming,
    /// Attached and reading.
    Reading,
}

/// A partition receiver link.
struct PartitionLink {
    link: LinkId,
    serial: u64,
    partition: u32,
    consumer_group: String,
    phase: Phase,
    reader: PartitionReader,
    cursor: Cursor,
    /// The receiver asked for last-enqueued figures with every event.
    tracks_last_enqueued: bool,
    /// The receiver asked to drain its credit.
    drain: bool,
}

/// One AMQP connection: the protocol state machine, what the client is allowed to read, and
/// its partition links. Shared by the reader and writer tasks; no borrow lives across an
/// await.
pub struct AmqpConnection {
    shard: Rc<Shard>,
    id: Cell<u64>,
    connection: RefCell<Connection>,
    grants: RefCell<Grants>,
    links: RefCell<Vec<PartitionLink>>,
    notices: RefCell<Vec<Notice>>,
    encoder: RefCell<EventEncoder>,
    scratch: RefCell<Vec<u8>>,
    /// Pump rounds so far.
    rounds: Cell<usize>,
    /// When the receivers' consumer groups were last checked against the hub's.
    groups_checked: Cell<Instant>,
    wake: LocalSender<()>,
    /// Wakes a reader waiting for the output to drain.
    space: LocalSender<()>,
}

impl std::fmt::Debug for AmqpConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AmqpConnection")
            .field("id", &self.id.get())
            .finish_non_exhaustive()
    }
}

impl ReaderListener for AmqpConnection {
    fn claim_answered(&self, serial: u64, answer: ClaimAnswer) {
        self.notices
            .borrow_mut()
            .push(Notice::Answered(serial, answer));
        self.wake_writer();
    }

    fn stolen(&self, serial: u64) {
        self.notices.borrow_mut().push(Notice::Stolen(serial));
        self.wake_writer();
    }

    fn committed(&self) {
        self.wake_writer();
    }
}

impl AmqpConnection {
    /// Closes the connection with `amqp:connection:forced` (the server is stopping).
    pub fn shut_down(&self, reason: &'static str) {
        self.notices.borrow_mut().push(Notice::ShutDown(reason));
        self.wake_writer();
    }

    fn wake_writer(&self) {
        // Full means a wake-up is already pending; the writer handles everything at once.
        let _ = self.wake.try_send(());
    }

    async fn write_loop(self: &Rc<Self>, mut writer: WritePipe, wakes: &LocalReceiver<()>) {
        let mut out = Vec::with_capacity(64 * 1024);
        loop {
            let now = Instant::now();
            self.handle_notices();
            self.connection.borrow_mut().handle_timeout(now);
            self.handle_events();
            let more = self.pump();
            out.clear();
            self.connection.borrow_mut().poll_transmit(now, &mut out);
            if !out.is_empty() && writer.write_plaintext(&out).await.is_err() {
                self.connection.borrow_mut().handle_eof();
                self.handle_events();
            }
            let _ = self.space.try_send(());
            let finished = {
                let connection = self.connection.borrow();
                connection.is_closed() && connection.pending_transmit() == 0
            };
            if finished {
                break;
            }
            if more {
                // Other connections get the core between batches.
                futures_lite::future::yield_now().await;
                continue;
            }
            let deadline = self.next_deadline();
            let wait = deadline.map_or(Duration::from_hours(1), |at| {
                at.saturating_duration_since(Instant::now())
            });
            let _ = glommio::timer::timeout(wait, async {
                wakes.recv().await;
                Ok(())
            })
            .await;
        }
        writer.close().await;
    }

    /// The next time something must happen without input: the protocol's time-outs and the
    /// expiry of the tokens the partition links read under.
    fn next_deadline(&self) -> Option<Instant> {
        let protocol = self.connection.borrow().next_timeout();
        let now_secs = (now_ms() / 1000) as u64;
        let grants = self.grants.borrow();
        let expiry = self
            .links
            .borrow()
            .iter()
            .filter_map(|link| grants.group(&link.consumer_group, now_secs))
            .min()
            .filter(|until| *until != u64::MAX)
            .map(|until| Instant::now() + Duration::from_secs(until.saturating_sub(now_secs)));
        let group_check = (!self.links.borrow().is_empty())
            .then(|| self.groups_checked.get() + GROUP_CHECK_INTERVAL);
        [protocol, expiry, group_check].into_iter().flatten().min()
    }

    /// Receivers whose consumer group was deleted since they attached, checked once per
    /// [`GROUP_CHECK_INTERVAL`]: their indexes in `links`.
    fn receivers_of_deleted_groups(&self, links: &[PartitionLink]) -> Vec<usize> {
        let now = Instant::now();
        if now < self.groups_checked.get() + GROUP_CHECK_INTERVAL {
            return Vec::new();
        }
        self.groups_checked.set(now);
        let identities = self.shard.identities();
        links
            .iter()
            .enumerate()
            .filter(|(_, link)| !identities.has_consumer_group(&link.consumer_group))
            .map(|(index, _)| index)
            .collect()
    }

    fn handle_notices(&self) {
        let notices = std::mem::take(&mut *self.notices.borrow_mut());
        for notice in notices {
            match notice {
                Notice::Answered(serial, answer) => self.apply_answer(serial, answer),
                Notice::Stolen(serial) => self.detach_stolen(serial),
                Notice::ShutDown(reason) => self
                    .connection
                    .borrow_mut()
                    .close(Some((Condition::ConnectionForced, reason))),
            }
        }
    }

    fn handle_events(self: &Rc<Self>) {
        loop {
            let event = self.connection.borrow_mut().poll_event();
            let Some(event) = event else {
                return;
            };
            match event {
                Event::SaslInit(init) => self.decide_sasl(&init),
                Event::ReceiverAttach(attach) => self.attach_receiver(&attach),
                Event::SenderAttach(attach) => {
                    let _ = self.connection.borrow_mut().refuse_link(
                        attach.link,
                        Condition::NotImplemented,
                        "this endpoint serves Event Hubs partition receivers only; sending to it is not supported",
                    );
                }
                Event::LinkCredit { link, drain, .. } => {
                    if let Some(reader) =
                        self.links.borrow_mut().iter_mut().find(|l| l.link == link)
                    {
                        reader.drain = drain;
                    }
                }
                Event::ManagementRequest(request) => self.answer(&request),
                Event::LinkDetached { link, .. } => self.forget_link(link),
                Event::Closed(reason) => {
                    log_close(&reason);
                    self.release_all();
                }
                // No link where the client sends to us is ever accepted, and events go out
                // settled.
                Event::Opened { .. } | Event::Message(_) | Event::DeliveryUpdated { .. } => {}
            }
        }
    }

    fn decide_sasl(&self, init: &SaslInit) {
        let outcome = match (init.mechanism, &init.plain) {
            // The client proves itself later, with a put-token on `$cbs`.
            (Mechanism::Anonymous | Mechanism::MsSbCbs, _) => SaslOutcome::Ok,
            (Mechanism::Plain, Some(credentials)) => {
                let allowed = cbs::authorize_plain(
                    &self.shard.identities(),
                    &credentials.username,
                    &credentials.password,
                );
                if allowed {
                    self.grants.borrow_mut().plain = true;
                    SaslOutcome::Ok
                } else {
                    tracing::info!(username = %credentials.username, "SASL PLAIN refused: not a key of a policy with ServiceConnect");
                    SaslOutcome::Auth
                }
            }
            (Mechanism::Plain, None) => SaslOutcome::Auth,
        };
        let _ = self.connection.borrow_mut().complete_sasl(outcome);
    }

    fn answer(&self, request: &ManagementRequest) {
        let (status, description, body) = match request.node {
            ManagementNode::Cbs => {
                let (status, description) = self.put_token(request);
                (status, description, None)
            }
            ManagementNode::Management => self.read(request),
        };
        if let Err(error) = self.connection.borrow_mut().respond(
            request.request,
            status,
            &description,
            body.as_ref(),
        ) {
            tracing::debug!(%error, "management response not sent");
        }
    }

    fn put_token(&self, request: &ManagementRequest) -> (i32, String) {
        let put = match PutToken::from_request(request) {
            Ok(put) => put,
            Err(error) => return (400, format!("not a put-token request: {error}")),
        };
        let now_secs = (now_ms() / 1000) as u64;
        let decided = cbs::authorize(
            &put,
            &self.shard.identities(),
            &self.shard.accepted_hosts,
            now_secs,
        );
        match decided {
            Ok(grant) => match self.grants.borrow_mut().add(grant, now_secs) {
                Ok(()) => (200, "OK".to_owned()),
                Err(description) => {
                    tracing::info!(audience = %put.audience, %description, "put-token refused");
                    (403, description)
                }
            },
            Err(refusal) => {
                tracing::info!(audience = %put.audience, status = refusal.status, description = %refusal.description, "put-token refused");
                (refusal.status, refusal.description)
            }
        }
    }

    fn read(&self, request: &ManagementRequest) -> (i32, String, Option<serde_amqp::Value>) {
        let read = match ReadRequest::from_request(request) {
            Ok(read) => read,
            Err(error) => {
                return (
                    400,
                    format!("not a READ of the event hub or a partition: {error}"),
                    None,
                );
            }
        };
        let (name, security_token) = match &read {
            ReadRequest::EventHub {
                name,
                security_token,
            }
            | ReadRequest::Partition {
                name,
                security_token,
                ..
            } => (name, security_token.as_deref()),
        };
        let identities = self.shard.identities();
        let hub_name = identities.hub_name();
        if !self.may_read_hub(security_token) {
            return (
                401,
                format!(
                    "Unauthorized: put a token for sb://{{host}}/{hub_name} on $cbs before reading the event hub's properties"
                ),
                None,
            );
        }
        if !name.eq_ignore_ascii_case(hub_name) {
            return (
                404,
                format!(
                    "The messaging entity '{name}' could not be found: this server serves event hub '{hub_name}'"
                ),
                None,
            );
        }
        let partition_count = identities.partition_count();
        match read {
            ReadRequest::EventHub { .. } => {
                let properties = management::event_hub(
                    hub_name,
                    self.shard.config.hub_created_ms,
                    partition_count,
                );
                (200, "OK".to_owned(), Some(properties.to_value()))
            }
            ReadRequest::Partition { partition, .. } => {
                let readers = self.shard.readers();
                match management::partition(hub_name, &partition, partition_count, |id| {
                    readers.partition_reader(id)
                }) {
                    Ok(properties) => (200, "OK".to_owned(), Some(properties.to_value())),
                    Err(failure) => (failure.status, failure.description, None),
                }
            }
        }
    }

    /// Whether a put-token (or PLAIN login) covers the hub, or the request's own token does.
    fn may_read_hub(&self, security_token: Option<&str>) -> bool {
        let now_secs = (now_ms() / 1000) as u64;
        if self.grants.borrow().hub(now_secs).is_some() {
            return true;
        }
        let Some(token) = security_token else {
            return false;
        };
        let Ok(parsed) = dataplane_wire::sas::SasToken::parse(token) else {
            return false;
        };
        let put = PutToken {
            audience: parsed.resource,
            token_type: PutToken::SAS_TOKEN_TYPE.to_owned(),
            token: token.to_owned(),
            expiration_ms: None,
        };
        cbs::authorize(
            &put,
            &self.shard.identities(),
            &self.shard.accepted_hosts,
            now_secs,
        )
        .is_ok_and(|grant| grant.scope == Scope::Hub)
    }

    fn attach_receiver(self: &Rc<Self>, attach: &ReceiverAttach) {
        match self.open_partition_link(attach) {
            Ok((link, answer)) => {
                let serial = link.serial;
                self.links.borrow_mut().push(link);
                if let Some(answer) = answer {
                    self.apply_answer(serial, answer);
                }
            }
            Err((condition, description)) => {
                tracing::info!(address = ?attach.address, %condition, %description, "receiver attach refused");
                let _ =
                    self.connection
                        .borrow_mut()
                        .refuse_link(attach.link, condition, &description);
            }
        }
    }

    /// Checks a receiver attach and claims its partition: the link, and the owner's answer
    /// when the owner is this shard.
    fn open_partition_link(
        self: &Rc<Self>,
        attach: &ReceiverAttach,
    ) -> Result<(PartitionLink, Option<ClaimAnswer>), (Condition, String)> {
        let identities = self.shard.identities();
        let hub_name = identities.hub_name();
        let NodeAddress::Partition(address) = &attach.node else {
            return Err((
                Condition::NotFound,
                format!(
                    "{:?} is not an event hub partition: receivers attach to {hub_name}/ConsumerGroups/{{consumer group}}/Partitions/{{partition id}}",
                    attach.address.as_deref().unwrap_or_default()
                ),
            ));
        };
        if !address.hub.eq_ignore_ascii_case(hub_name) {
            return Err((
                Condition::NotFound,
                format!(
                    "The messaging entity '{}' could not be found: this server serves event hub '{hub_name}'",
                    address.hub
                ),
            ));
        }
        let group = address.consumer_group.to_ascii_lowercase();
        let now_secs = (now_ms() / 1000) as u64;
        if self.grants.borrow().group(&group, now_secs).is_none() {
            return Err((
                Condition::UnauthorizedAccess,
                format!(
                    "no valid token for consumer group '{}': put a token for sb://{{host}}/{hub_name}/consumergroups/{} on $cbs before attaching",
                    address.consumer_group, address.consumer_group
                ),
            ));
        }
        if !identities.has_consumer_group(&address.consumer_group) {
            return Err((
                Condition::NotFound,
                format!(
                    "consumer group '{}' does not exist in event hub '{hub_name}'; create it with PUT /eventHubEndpoints/events/consumerGroups/{}",
                    address.consumer_group, address.consumer_group
                ),
            ));
        }
        let partition_count = identities.partition_count();
        let partition = management::partition_id(&address.partition, partition_count)
            .ok_or_else(|| {
                (
                    Condition::NotFound,
                    format!(
                        "partition '{}' does not exist: event hub '{hub_name}' has partitions 0 to {}",
                        address.partition,
                        partition_count.saturating_sub(1)
                    ),
                )
            })?;
        drop(identities);
        let selector = attach
            .start_position()
            .map_err(|error| (error.condition(), format!("selector filter: {error}")))?;
        let reader = self
            .shard
            .readers()
            .partition_reader(partition)
            .ok_or_else(|| {
                (
                    Condition::InternalError,
                    format!("partition {partition} is unavailable: it failed to open at start"),
                )
            })?;
        // The cursor is placed now, so `@latest` means "after the attach", not "after the
        // owner answered".
        let cursor = reader.cursor(start_position(selector.as_ref()));
        let weak: Weak<Self> = Rc::downgrade(self);
        let listener: Weak<dyn ReaderListener> = weak;
        let (serial, answer) =
            self.shard
                .readers()
                .claim(partition, &group, attach.epoch, listener);
        let link = PartitionLink {
            link: attach.link,
            serial,
            partition,
            consumer_group: group,
            phase: Phase::Claiming,
            reader,
            cursor,
            tracks_last_enqueued: attach.wants_runtime_metric(),
            drain: false,
        };
        Ok((link, answer))
    }

    /// Answers a pending attach with the owner's decision.
    fn apply_answer(&self, serial: u64, answer: ClaimAnswer) {
        let mut links = self.links.borrow_mut();
        let Some(at) = links
            .iter()
            .position(|link| link.serial == serial && link.phase == Phase::Claiming)
        else {
            // The link or the connection ended first; its release is on its way.
            return;
        };
        let mut connection = self.connection.borrow_mut();
        let link = &mut links[at];
        let refusal = match answer {
            ClaimAnswer::Granted => {
                if connection.accept_link(link.link).is_ok() {
                    link.phase = Phase::Reading;
                    return;
                }
                // The session ended while the claim was out.
                let ended = links.swap_remove(at);
                self.shard.readers().release(ended.serial);
                return;
            }
            ClaimAnswer::HigherEpochHolds { epoch } => (
                Condition::LinkStolen,
                format!(
                    "a receiver with owner level (epoch) {epoch} holds partition {} of consumer group '{}'",
                    link.partition, link.consumer_group
                ),
            ),
            ClaimAnswer::TooManyReaders => (
                Condition::ResourceLimitExceeded,
                format!(
                    "partition {} of consumer group '{}' already has {READERS_PER_GROUP_MAX} receivers, the most allowed",
                    link.partition, link.consumer_group
                ),
            ),
        };
        let _ = connection.refuse_link(link.link, refusal.0, &refusal.1);
        links.swap_remove(at);
    }

    /// Detaches a link whose partition a higher owner level took.
    fn detach_stolen(&self, serial: u64) {
        let mut links = self.links.borrow_mut();
        let Some(at) = links.iter().position(|link| link.serial == serial) else {
            return;
        };
        let link = links.swap_remove(at);
        let description = format!(
            "a receiver with a higher owner level (epoch) took partition {} of consumer group '{}'",
            link.partition, link.consumer_group
        );
        let _ = self
            .connection
            .borrow_mut()
            .detach_link(link.link, Some((Condition::LinkStolen, &description)));
    }

    /// A link ended on the client's side (or with its session).
    fn forget_link(&self, link: LinkId) {
        let ended = {
            let mut links = self.links.borrow_mut();
            links
                .iter()
                .position(|known| known.link == link)
                .map(|at| links.swap_remove(at))
        };
        if let Some(ended) = ended {
            self.shard.readers().release(ended.serial);
        }
    }

    fn release_all(&self) {
        let ended = std::mem::take(&mut *self.links.borrow_mut());
        for link in ended {
            self.shard.readers().release(link.serial);
        }
    }

    /// Sends committed events on the partition links, within their credit and at most
    /// [`PUMP_EVENTS_MAX`] in all. Returns whether the budget ran out (more may be waiting).
    fn pump(&self) -> bool {
        let mut links = self.links.borrow_mut();
        let mut connection = self.connection.borrow_mut();
        if links.is_empty() || !connection.is_open() {
            return false;
        }
        let mut encoder = self.encoder.borrow_mut();
        let mut scratch = self.scratch.borrow_mut();
        let now_ms = now_ms();
        let now_secs = (now_ms / 1000) as u64;
        let grants = self.grants.borrow();
        let mut budget = PUMP_EVENTS_MAX;
        let mut ended: Vec<(usize, Condition, String)> = self
            .receivers_of_deleted_groups(&links)
            .into_iter()
            .map(|index| {
                let description = format!(
                    "consumer group '{}' was deleted",
                    links[index].consumer_group
                );
                (index, Condition::NotFound, description)
            })
            .collect();
        let count = links.len();
        // Each round starts at the next link, so that no link always waits behind the others.
        let first = self.rounds.get() % count;
        self.rounds.set(self.rounds.get().wrapping_add(1));
        for step in 0..count {
            let index = (first + step) % count;
            let link = &mut links[index];
            if link.phase != Phase::Reading {
                continue;
            }
            if grants.group(&link.consumer_group, now_secs).is_none() {
                let description = format!(
                    "the token for consumer group '{}' expired; put a fresh one on $cbs",
                    link.consumer_group
                );
                ended.push((index, Condition::UnauthorizedAccess, description));
                continue;
            }
            let credit = connection.link_credit(link.link).unwrap_or(0) as usize;
            let allowed = credit.min(budget);
            if allowed == 0 {
                continue;
            }
            let last = if link.tracks_last_enqueued {
                LastEnqueued::of(&link.reader.committed(), now_ms)
            } else {
                None
            };
            let mut sent = 0;
            while sent < allowed {
                let record = match link.cursor.next() {
                    Ok(Some(record)) => record,
                    Ok(None) => break,
                    Err(error) => {
                        tracing::error!(partition = link.partition, %error, "a partition reader stopped at a damaged record");
                        ended.push((index, Condition::InternalError, error.to_string()));
                        break;
                    }
                };
                scratch.clear();
                if let Err(error) = encoder.encode(&record, last.as_ref(), &mut scratch) {
                    tracing::error!(partition = link.partition, %error, "a partition reader stopped at a damaged record");
                    ended.push((index, Condition::InternalError, error.to_string()));
                    break;
                }
                if let Err(error) = connection.send_message(link.link, &scratch, true) {
                    ended.push((index, Condition::InternalError, error.to_string()));
                    break;
                }
                sent += 1;
            }
            budget -= sent;
            if link.drain && sent < allowed && !link.cursor.has_more() {
                link.drain = false;
                let _ = connection.finish_drain(link.link);
            }
            if budget == 0 {
                break;
            }
        }
        ended.sort_by_key(|(index, ..)| std::cmp::Reverse(*index));
        ended.dedup_by_key(|(index, ..)| *index);
        for (index, condition, description) in ended {
            let link = links.swap_remove(index);
            self.shard.readers().release(link.serial);
            let _ = connection.detach_link(link.link, Some((condition, &description)));
        }
        budget == 0
    }
}

fn log_close(reason: &CloseReason) {
    match reason {
        CloseReason::Eof | CloseReason::PeerClosed { error: None } | CloseReason::Local => {
            tracing::debug!(?reason, "AMQP connection ended");
        }
        other => tracing::info!(reason = ?other, "AMQP connection ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, expiry_secs: u64) -> cbs::Grant {
        cbs::Grant {
            scope: Scope::ConsumerGroup(name.to_owned()),
            expiry_secs,
        }
    }

    #[test]
    fn consumer_group_grants_are_bounded_per_connection() {
        // Setup: tokens for as many groups as allowed, half of them expiring at 100. Expectation:
        // at the bound, a new group is accepted only once expired grants make room, refreshing a
        // held group is always accepted, and a full set of live grants refuses a new group
        // with a reason, keeping what it holds.
        let mut grants = Grants::default();
        for i in 0..GROUP_GRANTS_MAX {
            let expiry = if i % 2 == 0 { 100 } else { 1_000 };
            grants.add(group(&format!("g{i}"), expiry), 50).unwrap();
        }
        grants
            .add(group("g1", 2_000), 50)
            .expect("a refresh at the bound");
        let full = grants
            .add(group("new", 1_000), 50)
            .expect_err("full of live grants");
        assert!(full.contains("256 consumer groups"), "{full}");
        assert_eq!(grants.group("g0", 50), Some(100));
        grants
            .add(group("new", 1_000), 200)
            .expect("expired grants make room");
        assert_eq!(grants.group("new", 200), Some(1_000));
        assert_eq!(grants.group("g0", 200), None);
        assert_eq!(grants.group("g1", 200), Some(2_000));
        assert!(grants.groups.len() <= GROUP_GRANTS_MAX / 2 + 1);
    }
}
