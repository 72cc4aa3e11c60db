//! An MQTT 3.1.1 connection with IoT Hub's semantics (checklist P1, D1-D4).
//!
//! ```text
//!  accepting shard                              home shard (owns the device's partition)
//!  ───────────────                              ──────────────────────────────────────────
//!  accept ─▶ TLS handshake ─▶ CONNECT ─▶ auth ─┬─▶ (home here) run_session
//!                                              └─▶ Adopt over the mesh ─▶ adopt ─▶ run_session
//!
//!  run_session: CONNACK, then two tasks sharing the session's state
//!    reader: socket ─▶ TLS ─▶ decode every packet read ─▶ one append per read ─▶ acks queued
//!    writer: woken by the flusher (acks released) or the reader (SUBACK, PINGRESP) ─▶ one write
//! ```
//!
//! Every packet a read brought is decoded before anything is appended, and the whole batch is
//! appended at once: one append, one flush and one socket write serve all of it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd as _, FromRawFd as _, IntoRawFd as _, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dataplane_log::RecordInput;
use dataplane_wire::bytes::BytesMut;
use dataplane_wire::iothub::{
    ClientId, MessageProperties, PublishTopic, Subscription, SystemProperty, parse_expiry_ms,
};
use dataplane_wire::mqtt::{
    ConnAck, Connect, ConnectReturnCode, Decoded, Decoder, Delivery, Packet, PacketId, PingResp,
    PubAck, Publish, QoS, SubAck, SubscribeReturnCode, UnsubAck,
};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::SessionHandle;
use super::persistent::SubscriptionSet;
use crate::auth::{Authenticated, authenticate};
use crate::ingest::{AckQueue, PartitionOwner};
use crate::listener::transport::{Pipe, ReadPipe, WritePipe};
use crate::shard::mesh::{Handoff, ShardMessage};
use crate::shard::{Shard, now_ms};

/// Publishes appended in one batch at most; a read holding more appends several batches.
const BATCH_RECORDS_MAX: usize = 512;

/// Input buffer capacity an idle session keeps; a larger one (grown by large messages) is
/// released once drained.
const INPUT_BUFFER_BYTES_KEPT: usize = 16 * 1024;

/// How long a session blocked on the shard-wide in-flight bound waits before looking again.
const SHARD_BACKPRESSURE_POLL: Duration = Duration::from_millis(2);

/// `iothub-message-source` of device telemetry.
const TELEMETRY_SOURCE: &str = "Telemetry";

/// A message to append: a PUBLISH, or the will of a connection that dropped.
struct Incoming<'a> {
    topic: &'a str,
    payload: &'a [u8],
    delivery: Delivery,
    retain: bool,
    /// A will: stamped `iothub-MessageType: Will`, as IoT Hub does.
    will: bool,
}

impl<'a> From<&'a Publish> for Incoming<'a> {
    fn from(publish: &'a Publish) -> Self {
        Self {
            topic: publish.topic(),
            payload: publish.payload(),
            delivery: publish.delivery(),
            retain: publish.retain(),
            will: false,
        }
    }
}

/// Serves a connection accepted on this shard: handshake, CONNECT, authentication, then the
/// session here or on the device's home shard.
pub async fn serve_accepted(shard: Rc<Shard>, stream: TcpStream, tls: Option<Arc<ServerConfig>>) {
    if !shard.admit_connection() {
        tracing::warn!(
            shard = shard.id,
            "connection refused: the shard is at its connection bound"
        );
        return;
    }
    let peer = stream.peer_addr().ok();
    let result = accept_and_route(&shard, stream, tls).await;
    shard.release_connection();
    if let Err(reason) = result {
        tracing::debug!(?peer, %reason, "MQTT connection ended before its session started");
    }
}

async fn accept_and_route(
    shard: &Rc<Shard>,
    stream: TcpStream,
    tls: Option<Arc<ServerConfig>>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let tls = match tls {
        Some(config) => Some(ServerConnection::new(config).map_err(|error| error.to_string())?),
        None => None,
    };
    let mut pipe = Pipe::new(stream, tls);
    let connect_timeout = shard.config.limits.connect_timeout;
    pipe.handshake(connect_timeout)
        .await
        .map_err(|error| error.to_string())?;

    let decoder = Decoder::new(shard.config.limits.mqtt_packet_bytes_max);
    let mut inbuf = BytesMut::with_capacity(4096);
    let first = glommio::timer::timeout(connect_timeout, async {
        Ok(read_first_packet(&mut pipe, &decoder, &mut inbuf).await)
    })
    .await
    .map_err(|_| format!("no CONNECT within {connect_timeout:?}"))??;
    let Packet::Connect(connect) = first else {
        return Err(format!(
            "the first packet was {}, not CONNECT",
            first.packet_type()
        ));
    };
    let connect = *connect;

    let now_secs = (now_ms() / 1000) as u64;
    let authenticated = authenticate(
        &connect,
        &shard.identities(),
        &shard.accepted_hosts,
        now_secs,
    );
    let authenticated = match authenticated {
        Ok(authenticated) => authenticated,
        Err(refusal) => {
            tracing::info!(client_id = %connect.client_id, code = ?refusal.code, reason = %refusal.reason, "CONNECT refused");
            let mut out = BytesMut::with_capacity(4);
            ConnAck {
                session_present: false,
                code: refusal.code,
            }
            .encode(&mut out);
            let _ = pipe.write_plaintext(&out).await;
            return Ok(());
        }
    };

    let (_, home) = shard.home_of(&authenticated.key.device_id);
    if home == shard.id {
        run_session(Rc::clone(shard), pipe, inbuf, connect, authenticated).await;
        return Ok(());
    }
    // Move the connection home: duplicate the descriptor, hand everything over, and let this
    // shard's copy of the socket close.
    let (stream, tls, raw_in) = pipe.into_parts();
    // SAFETY: dup(2) of a descriptor this shard owns; the copy's sole owner is the OwnedFd.
    let duplicate = unsafe { libc::dup(stream.as_raw_fd()) };
    if duplicate < 0 {
        return Err(format!("dup: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `duplicate` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(duplicate) };
    drop(stream);
    let handoff = Handoff {
        socket,
        tls,
        raw_in,
        plaintext: inbuf,
        connect,
        authenticated,
    };
    shard
        .send_to(home, ShardMessage::Adopt(Box::new(handoff)))
        .await
        .map_err(|()| format!("shard {home} is gone"))
}

async fn read_first_packet(
    pipe: &mut Pipe,
    decoder: &Decoder,
    inbuf: &mut BytesMut,
) -> Result<Packet, String> {
    loop {
        match decoder.decode(inbuf) {
            Ok(Decoded::Packet(packet)) => return Ok(packet),
            Ok(Decoded::Incomplete { .. }) => {}
            Err(error) => return Err(format!("malformed first packet: {error}")),
        }
        match pipe.read_plaintext(inbuf).await {
            Ok(true) => {}
            Ok(false) => return Err("closed before CONNECT".into()),
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// Runs a connection handed over by the shard that accepted it.
pub async fn adopt(shard: Rc<Shard>, handoff: Handoff) {
    let Handoff {
        socket,
        tls,
        raw_in,
        plaintext,
        connect,
        authenticated,
    } = handoff;
    if !shard.admit_connection() {
        tracing::warn!(
            shard = shard.id,
            "handed-over connection refused: the shard is at its bound"
        );
        return;
    }
    // SAFETY: the OwnedFd was the descriptor's sole owner; the stream takes that ownership.
    let stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
    let pipe = Pipe::adopt(stream, tls, &raw_in);
    run_session(Rc::clone(&shard), pipe, plaintext, connect, authenticated).await;
    shard.release_connection();
}

/// State the reader and the writer of a session share.
struct Shared {
    /// Encoded responses (SUBACK, PINGRESP, ...) waiting for the writer.
    out: RefCell<BytesMut>,
    acks: Rc<AckQueue>,
    handle: Rc<SessionHandle>,
    /// The reader ended; the writer flushes and stops.
    finished: Cell<bool>,
    wake_writer: Rc<LocalSender<()>>,
    /// Wakes a reader waiting for acknowledgements to drain.
    space: LocalSender<()>,
}

/// The session proper, on the device's home shard.
async fn run_session(
    shard: Rc<Shard>,
    mut pipe: Pipe,
    inbuf: BytesMut,
    connect: Connect,
    authenticated: Authenticated,
) {
    let (partition_id, _) = shard.home_of(&authenticated.key.device_id);
    let (Some(partition), Some(store)) = (
        shard.partition(partition_id),
        shard.session_store(partition_id),
    ) else {
        // The partition did not open (its recovery failed and was reported at start).
        tracing::warn!(partition_id, client_id = %connect.client_id, "CONNECT refused: the device's partition is unavailable");
        let mut out = BytesMut::with_capacity(4);
        ConnAck {
            session_present: false,
            code: ConnectReturnCode::ServerUnavailable,
        }
        .encode(&mut out);
        let _ = pipe.write_plaintext(&out).await;
        return;
    };
    let client_id = connect.client_id.clone();
    let (subscriptions, session_present) = if connect.clean_session {
        store.set(&client_id, None);
        (SubscriptionSet::default(), false)
    } else {
        match store.get(&client_id) {
            Some(subscriptions) => (subscriptions, true),
            None => {
                store.set(&client_id, Some(SubscriptionSet::default()));
                (SubscriptionSet::default(), false)
            }
        }
    };

    let mut connack = BytesMut::with_capacity(4);
    ConnAck {
        session_present,
        code: ConnectReturnCode::Accepted,
    }
    .encode(&mut connack);
    if pipe.write_plaintext(&connack).await.is_err() {
        return;
    }

    let (wake_writer, writer_wakes) = local_channel::new_bounded(1);
    let wake_writer = Rc::new(wake_writer);
    let (space, space_wakes) = local_channel::new_bounded(1);
    let handle = Rc::new(SessionHandle::new(
        authenticated.key.clone(),
        pipe.stream().as_raw_fd(),
        Rc::clone(&wake_writer),
        authenticated
            .expiry_secs
            .saturating_mul(1000)
            .min(i64::MAX as u64) as i64,
    ));
    let shared = Rc::new(Shared {
        out: RefCell::new(BytesMut::with_capacity(256)),
        acks: Rc::new(AckQueue::new(Rc::clone(&wake_writer))),
        handle: Rc::clone(&handle),
        finished: Cell::new(false),
        wake_writer,
        space,
    });
    shard.register_session(&client_id, Rc::clone(&handle));
    let connected_ms = now_ms();
    shard.report(authenticated.key.clone(), Some(true), connected_ms);
    tracing::debug!(%client_id, partition_id, shard = shard.id, "session started");

    let (reader, writer) = pipe.split();
    let writer_task = glommio::spawn_local(run_writer(writer, Rc::clone(&shared), writer_wakes));
    let mut session = Session {
        shard: Rc::clone(&shard),
        partition,
        store,
        shared: Rc::clone(&shared),
        connect: &connect,
        authenticated: &authenticated,
        subscriptions,
        decoder: Decoder::new(shard.config.limits.mqtt_packet_bytes_max),
        disconnected_cleanly: false,
    };
    let reason = session.read_loop(reader, inbuf, &space_wakes).await;
    if !session.disconnected_cleanly {
        session.send_will();
    }
    shared.finished.set(true);
    let _ = shared.wake_writer.try_send(());
    let reason = handle.close_reason().map_or(reason, Cow::Borrowed);
    tracing::debug!(%client_id, %reason, "session ended");
    writer_task.await;
    if shard.unregister_session(&client_id, &handle) {
        shard.report(authenticated.key.clone(), Some(false), now_ms());
    }
}

async fn run_writer(mut writer: WritePipe, shared: Rc<Shared>, wakes: LocalReceiver<()>) {
    let mut out = BytesMut::with_capacity(256);
    let mut released = Vec::new();
    while wakes.recv().await.is_some() {
        out.clear();
        std::mem::swap(&mut out, &mut *shared.out.borrow_mut());
        shared.acks.take_released(&mut released);
        for packet_id in released.drain(..) {
            PubAck { pkid: packet_id }.encode(&mut out);
        }
        if !out.is_empty() && writer.write_plaintext(&out).await.is_err() {
            shared.handle.close("the socket failed while writing");
        }
        let _ = shared.space.try_send(());
        if shared.acks.failed() {
            shared
                .handle
                .close("the partition failed to flush; unacknowledged messages must be resent");
        }
        if shared.finished.get() || shared.handle.close_reason().is_some() {
            break;
        }
    }
    writer.close().await;
}

struct Session<'c> {
    shard: Rc<Shard>,
    partition: Rc<PartitionOwner>,
    store: Rc<super::persistent::SessionStore>,
    shared: Rc<Shared>,
    connect: &'c Connect,
    authenticated: &'c Authenticated,
    subscriptions: SubscriptionSet,
    decoder: Decoder,
    /// The device sent DISCONNECT: its will is discarded.
    disconnected_cleanly: bool,
}

impl Session<'_> {
    /// Reads and handles packets until the connection ends; returns why.
    async fn read_loop(
        &mut self,
        mut reader: ReadPipe,
        mut inbuf: BytesMut,
        space_wakes: &LocalReceiver<()>,
    ) -> Cow<'static, str> {
        let client = match ClientId::parse(&self.connect.client_id) {
            Ok(client) => client,
            Err(error) => return Cow::Owned(error.to_string()),
        };
        // 1.5x the keep-alive, as MQTT 3.1.1 asks; 0 means no keep-alive.
        let keep_alive_ms = i64::from(self.connect.keep_alive_secs) * 1500;
        let limits = self.shard.config.limits;
        let mut publishes: Vec<Publish> = Vec::with_capacity(16);
        loop {
            // Handle everything the last read brought.
            loop {
                match self.decoder.decode(&mut inbuf) {
                    Ok(Decoded::Packet(packet)) => match packet {
                        Packet::Publish(publish) => {
                            publishes.push(publish);
                            if publishes.len() >= BATCH_RECORDS_MAX {
                                if let Err(reason) = self.ingest(&client, &publishes) {
                                    return reason;
                                }
                                publishes.clear();
                            }
                        }
                        // Acknowledgements of server-to-device messages (none sent yet).
                        Packet::PubAck(_) => {}
                        Packet::Subscribe(subscribe) => {
                            if let Err(reason) = self.subscribe(&client, &subscribe) {
                                return reason;
                            }
                        }
                        Packet::Unsubscribe(unsubscribe) => {
                            if let Err(reason) = self.unsubscribe(&client, &unsubscribe) {
                                return reason;
                            }
                        }
                        Packet::PingReq => PingResp.encode(&mut *self.shared.out.borrow_mut()),
                        Packet::Disconnect => {
                            self.disconnected_cleanly = true;
                            return Cow::Borrowed("the device disconnected");
                        }
                        Packet::Connect(_) => {
                            tracing::info!(client_id = %self.connect.client_id, "second CONNECT on a connection; closing it");
                            return Cow::Borrowed("a second CONNECT");
                        }
                    },
                    Ok(Decoded::Incomplete { .. }) => break,
                    Err(error) => {
                        tracing::info!(client_id = %self.connect.client_id, %error, "closing the connection: protocol error");
                        return Cow::Owned(error.to_string());
                    }
                }
            }
            if !publishes.is_empty() {
                if let Err(reason) = self.ingest(&client, &publishes) {
                    return reason;
                }
                publishes.clear();
            }
            if !self.shared.out.borrow().is_empty() || reader.tls_wants_write() {
                let _ = self.shared.wake_writer.try_send(());
            }
            let now = now_ms();
            self.shared.handle.touch(now);
            if keep_alive_ms > 0 {
                self.shared.handle.set_silence_deadline(now + keep_alive_ms);
            }
            if self.shared.handle.close_reason().is_some() {
                return Cow::Borrowed("closed by the server");
            }

            // Backpressure: stop reading while too much waits for a flush.
            while self.shared.acks.pending_count() >= limits.inflight_per_connection
                || self.shard.inflight() >= limits.inflight_per_shard
            {
                if self.shared.acks.failed() || self.shared.handle.close_reason().is_some() {
                    return Cow::Borrowed("closed while waiting for acknowledgements");
                }
                let () = futures_lite::future::or(
                    async {
                        space_wakes.recv().await;
                    },
                    glommio::timer::sleep(SHARD_BACKPRESSURE_POLL),
                )
                .await;
            }

            // A burst of large messages grew the buffer; give the memory back once it is drained,
            // so an idle connection holds what an idle connection needs.
            if inbuf.is_empty() && inbuf.capacity() > INPUT_BUFFER_BYTES_KEPT {
                inbuf = BytesMut::with_capacity(INPUT_BUFFER_BYTES_KEPT);
            }
            self.shared.handle.set_buffer_bytes(
                inbuf.capacity()
                    + crate::listener::transport::SOCKET_READ_BYTES
                    + self.shared.out.borrow().capacity(),
            );

            // No timer per read: the shard's sweeper closes sessions past their keep-alive or
            // token expiry (`SessionHandle::close_if_expired`), which ends this read.
            match reader.read_plaintext(&mut inbuf).await {
                Ok(true) => {}
                Ok(false) => return Cow::Borrowed("the device closed the connection"),
                Err(error) => return Cow::Owned(error.to_string()),
            }
        }
    }

    /// Appends a batch of PUBLISHes to the device's partition.
    fn ingest(
        &self,
        client: &ClientId<'_>,
        publishes: &[Publish],
    ) -> Result<(), Cow<'static, str>> {
        let incoming: Vec<Incoming<'_>> = publishes.iter().map(Incoming::from).collect();
        self.append(client, &incoming)
    }

    /// A connection that ended without DISCONNECT sends its will as telemetry (checklist P1).
    fn send_will(&self) {
        let Some(will) = &self.connect.will else {
            return;
        };
        let Ok(client) = ClientId::parse(&self.connect.client_id) else {
            return;
        };
        let incoming = [Incoming {
            topic: &will.topic,
            payload: &will.message,
            delivery: Delivery::AtMostOnce,
            retain: false,
            will: true,
        }];
        if let Err(reason) = self.append(&client, &incoming) {
            tracing::info!(client_id = %self.connect.client_id, %reason, "the will was not sent");
        }
    }

    /// Appends messages to the device's partition, stamping IoT Hub's system properties.
    fn append(
        &self,
        client: &ClientId<'_>,
        publishes: &[Incoming<'_>],
    ) -> Result<(), Cow<'static, str>> {
        let client_id = &self.connect.client_id;
        let mut bags = Vec::with_capacity(publishes.len());
        for publish in publishes {
            let properties = match PublishTopic::parse(publish.topic, client) {
                Ok(PublishTopic::Telemetry { properties }) => properties,
                Ok(other) => {
                    tracing::info!(%client_id, topic = publish.topic, ?other, "closing the connection: twin and method topics are not served yet");
                    return Err(Cow::Borrowed("twin and method topics are not served yet"));
                }
                Err(error) => {
                    tracing::info!(%client_id, topic = publish.topic, %error, "closing the connection: a PUBLISH outside IoT Hub's topics");
                    return Err(Cow::Owned(error.to_string()));
                }
            };
            let bag = MessageProperties::parse(properties).map_err(|error| {
                tracing::info!(%client_id, %error, "closing the connection: invalid message properties");
                Cow::Owned(error.to_string())
            })?;
            if let Err(error) = bag.check_message_size(publish.payload.len()) {
                tracing::warn!(%client_id, %error, "refused a device-to-cloud message larger than 256 KiB (body plus properties); closing the connection");
                return Err(Cow::Owned(error.to_string()));
            }
            bags.push(bag);
        }

        // Application properties of the whole batch, flat, each message a range of it.
        let mut application: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        let mut ranges = Vec::with_capacity(publishes.len());
        for (bag, publish) in bags.iter().zip(publishes) {
            let start = application.len();
            application.extend(bag.application());
            if publish.retain {
                application.push((Cow::Borrowed("mqtt-retain"), Cow::Borrowed("true")));
            }
            if publish.will {
                application.push((Cow::Borrowed("iothub-MessageType"), Cow::Borrowed("Will")));
            }
            ranges.push(start..application.len());
        }
        let application: Vec<(&str, &str)> = application
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_ref()))
            .collect();

        let identity = self.authenticated;
        let mut records = Vec::with_capacity(publishes.len());
        let mut acknowledgements: Vec<Option<PacketId>> = Vec::with_capacity(publishes.len());
        for ((bag, publish), range) in bags.iter().zip(publishes).zip(ranges) {
            let expiry_time_ms = match bag.expiry_ms() {
                Some(Ok(ms)) => Some(ms),
                Some(Err(error)) => {
                    tracing::info!(%client_id, %error, "closing the connection: invalid $.exp");
                    return Err(Cow::Owned(error.to_string()));
                }
                None => None,
            };
            let creation_time_ms = bag
                .get(SystemProperty::CreationTimeUtc)
                .and_then(|text| parse_expiry_ms(text).ok());
            records.push(RecordInput {
                message_id: bag.get(SystemProperty::MessageId),
                correlation_id: bag.get(SystemProperty::CorrelationId),
                user_id: bag.get(SystemProperty::UserId).map(str::as_bytes),
                content_type: bag.get(SystemProperty::ContentType),
                content_encoding: bag.get(SystemProperty::ContentEncoding),
                creation_time_ms,
                expiry_time_ms,
                connection_device_id: Some(&identity.key.device_id),
                connection_module_id: identity.key.module_id.as_deref(),
                auth_method: Some(identity.method.stamp()),
                auth_generation_id: Some(&identity.generation_id),
                message_source: Some(TELEMETRY_SOURCE),
                properties: &application[range],
                payload: publish.payload,
                interface_id: bag.get(SystemProperty::InterfaceId),
                component_name: bag.get(SystemProperty::ComponentName),
                // Plug and Play devices declare their model once, in CONNECT's user name.
                data_schema: identity.model_id.as_deref(),
                output_name: bag.get(SystemProperty::OutputName),
            });
            acknowledgements.push(match publish.delivery {
                Delivery::AtMostOnce => None,
                Delivery::AtLeastOnce { pkid, .. } => Some(pkid),
            });
        }
        self.partition
            .append(&records, &acknowledgements, &self.shared.acks, now_ms())
            .map(drop)
            .map_err(|error| {
                tracing::error!(%client_id, %error, "append failed; closing the connection without acknowledging");
                Cow::Owned(error.to_string())
            })
    }

    fn subscribe(
        &mut self,
        client: &ClientId<'_>,
        subscribe: &dataplane_wire::mqtt::Subscribe,
    ) -> Result<(), Cow<'static, str>> {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            let subscription = Subscription::parse(&filter.filter, client).map_err(|error| {
                tracing::info!(client_id = %self.connect.client_id, filter = %filter.filter, %error, "closing the connection: a subscription outside IoT Hub's topics");
                Cow::Owned(error.to_string())
            })?;
            self.subscriptions.insert(subscription);
            codes.push(SubscribeReturnCode::Granted(
                filter.qos.min(QoS::AtLeastOnce),
            ));
        }
        if codes.is_empty() {
            return Err(Cow::Borrowed("a SUBSCRIBE without filters"));
        }
        SubAck {
            pkid: subscribe.pkid,
            return_codes: &codes,
        }
        .encode(&mut *self.shared.out.borrow_mut())
        .map_err(|error| Cow::Owned(error.to_string()))?;
        self.persist_subscriptions();
        Ok(())
    }

    fn unsubscribe(
        &mut self,
        client: &ClientId<'_>,
        unsubscribe: &dataplane_wire::mqtt::Unsubscribe,
    ) -> Result<(), Cow<'static, str>> {
        for filter in &unsubscribe.filters {
            let subscription = Subscription::parse(filter, client).map_err(|error| {
                tracing::info!(client_id = %self.connect.client_id, %filter, %error, "closing the connection: an unsubscription outside IoT Hub's topics");
                Cow::Owned(error.to_string())
            })?;
            self.subscriptions.remove(subscription);
        }
        UnsubAck {
            pkid: unsubscribe.pkid,
        }
        .encode(&mut *self.shared.out.borrow_mut());
        self.persist_subscriptions();
        Ok(())
    }

    fn persist_subscriptions(&self) {
        if !self.connect.clean_session {
            self.store
                .set(&self.connect.client_id, Some(self.subscriptions));
        }
    }
}
