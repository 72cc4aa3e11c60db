//! The server side of one AMQP connection, sans IO.
//!
//! The caller owns the socket and the clock. It feeds received bytes to
//! [`Connection::handle_bytes`], writes what [`Connection::poll_transmit`] returns, reacts to
//! [`Connection::poll_event`], and calls [`Connection::handle_timeout`] at
//! [`Connection::next_timeout`]. Decisions (SASL outcome, link accept or refuse, management
//! responses, settlement) are method calls; each writes its frames into the transmit buffer
//! at once.
//!
//! ```text
//!  Header ──SASL hdr──▶ SaslInit ──init──▶ SaslDecision ──complete_sasl(Ok)──▶ AmqpHeader
//!    │                     │ unknown mech         │ Auth                          │ AMQP hdr
//!    │ AMQP hdr (allow_no_sasl)                   ▼                               ▼
//!    └──────────────────────────────────────▶ Opening (our header + open sent) ──peer open──▶ Open
//!                                                   │                                        │
//!  any state: EOF, error, close (either side), idle or handshake time-out ─────────────────▶ Closed
//! ```
//!
//! `Closed` is terminal and reported once as [`Event::Closed`]. When we close, our `close`
//! frame is the last thing in the transmit buffer; the caller writes it, shuts down its
//! writing half and drops the socket. We do not wait for the peer's `close`: pyamqp itself
//! never waits for ours.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{self, ErrorCondition};
use fe2o3_amqp_types::messaging::DeliveryState;
use fe2o3_amqp_types::messaging::{MessageId, TargetArchetype};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use serde_amqp::Value;
use serde_amqp::descriptor::Descriptor;

use crate::address::{NodeAddress, SELECTOR_FILTER_CODE, SELECTOR_FILTER_NAME};
use crate::codec::{self, Compound};
use crate::error::{
    ApiError, Condition, ConnectionError, ErrorInfo, FrameError, LinkError, SessionError,
};
use crate::frame::{self, Frame, ProtocolHeader};
use crate::link::{AttachEcho, Link, LinkKind, LinkState, Partial};
use crate::management::{ManagementNode, ManagementRequest};
use crate::message::{Sections, section};
use crate::performative::{
    self, AttachFields, BeginFields, CloseFields, DetachFields, DispositionFields, EndFields,
    ErrorFields, OpenFields, Outcome, Role, SaslFrame, write_frame,
};
use crate::sasl::{self, Mechanism, SaslInit, SaslOutcome};
use crate::session::Session;

/// Limits and identity of a server connection. Every bound is enforced; see
/// [`Config::default`] for the reasoning behind each default.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our container id in `open`.
    pub container_id: String,
    /// The largest frame we accept; larger frames end the connection before they are
    /// buffered. At least 512 (AMQP's minimum).
    pub max_frame_size: u32,
    /// The highest channel number we accept.
    pub channel_max: u16,
    /// The highest link handle we accept per session.
    pub handle_max: u32,
    /// Our idle time-out: the peer must send a frame at least this often.
    pub idle_timeout_ms: Option<u32>,
    /// Time from creation to the peer's `open`, after which the connection is dropped.
    pub handshake_timeout_ms: u32,
    /// Sessions per connection.
    pub sessions_max: usize,
    /// Links per connection, over all sessions.
    pub links_max: usize,
    /// Our session incoming window, in transfer frames.
    pub incoming_window: u32,
    /// The largest (reassembled) message we accept on a link.
    pub message_size_max: u64,
    /// The SASL mechanisms offered, in order of preference.
    pub mechanisms: Vec<Mechanism>,
    /// Accept a bare AMQP header (no SASL) as an anonymous client.
    pub allow_no_sasl: bool,
    /// Management requests in flight per `$cbs`/`$management` link (credit plus
    /// unanswered requests).
    pub management_window: u32,
    /// Credit window of links where the client sends to us, once accepted.
    pub receiver_window: u32,
    /// Unsettled deliveries we may have sent per session.
    pub unsettled_max: usize,
    /// Bytes of input buffered while the connection waits for the caller (SASL decision).
    pub input_buffered_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            container_id: "shoal".into(),
            // Large enough for any attach and for 64 KiB messages in one frame; clients
            // split larger ones.
            max_frame_size: 256 * 1024,
            channel_max: 255,
            handle_max: 255,
            // Event Hubs uses 240 s; clients then send a heartbeat every 120 s at worst.
            idle_timeout_ms: Some(240_000),
            handshake_timeout_ms: 30_000,
            // One client opens one session per connection, a device SDK a few.
            sessions_max: 16,
            links_max: 64,
            incoming_window: 5_000,
            message_size_max: 1024 * 1024,
            mechanisms: vec![Mechanism::MsSbCbs, Mechanism::Anonymous, Mechanism::Plain],
            allow_no_sasl: false,
            management_window: 16,
            receiver_window: 100,
            unsettled_max: 4_096,
            input_buffered_max: 1024 * 1024,
        }
    }
}

/// A link, as the caller names it. Stays valid until the link is detached; a later link
/// that reuses the handle gets a different id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    channel: u16,
    handle: u32,
    generation: u32,
}

/// A management request waiting for [`Connection::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// A client that attached a link to receive from us (we are the sender): an Event Hubs
/// partition reader, or a device receiving cloud-to-device messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverAttach {
    /// The link.
    pub link: LinkId,
    /// The link name.
    pub name: String,
    /// The source address, e.g. `amqps://{host}/{hub}/ConsumerGroups/{cg}/Partitions/{pid}`.
    pub address: Option<String>,
    /// The address classified.
    pub node: NodeAddress,
    /// The selector filter expression (symbolic or numeric descriptor), if any.
    pub selector: Option<String>,
    /// `com.microsoft:epoch`: the owner level.
    pub epoch: Option<i64>,
    /// The desired capabilities.
    pub desired_capabilities: Vec<String>,
    /// The client's max-message-size.
    pub max_message_size: Option<u64>,
}

impl ReceiverAttach {
    /// The capability that asks for last-enqueued runtime metrics.
    pub const RUNTIME_METRIC: &'static str = "com.microsoft:enable-receiver-runtime-metric";

    /// Whether events on this link carry runtime metrics.
    pub fn wants_runtime_metric(&self) -> bool {
        self.desired_capabilities
            .iter()
            .any(|c| c == Self::RUNTIME_METRIC)
    }

    /// The start position from the selector; `None` when the client sent no filter.
    pub fn start_position(
        &self,
    ) -> Result<Option<crate::address::StartPosition>, crate::address::FilterError> {
        self.selector
            .as_deref()
            .map(crate::address::StartPosition::parse_selector)
            .transpose()
    }
}

/// A client that attached a link to send to us (we are the receiver): cloud-to-device
/// messages from the service SDK, telemetry from a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderAttach {
    /// The link.
    pub link: LinkId,
    /// The link name.
    pub name: String,
    /// The target address, e.g. `amqps://{host}/messages/devicebound`.
    pub address: Option<String>,
    /// The address classified.
    pub node: NodeAddress,
}

/// A complete message received on a link where we are the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The link.
    pub link: LinkId,
    /// The session-scoped delivery id, for [`Connection::settle`].
    pub delivery_id: u32,
    /// The delivery tag.
    pub delivery_tag: Vec<u8>,
    /// The sender settled it already; no settlement is expected.
    pub settled: bool,
    /// The encoded message (all transfer frames joined).
    pub payload: Vec<u8>,
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent `close`; we answered it.
    PeerClosed {
        /// The error the peer reported.
        error: Option<ErrorInfo>,
    },
    /// The socket reached EOF without a `close`: how pyamqp always leaves.
    Eof,
    /// The caller closed the connection.
    Local,
    /// We closed on a protocol error, and told the peer.
    Error(ConnectionError),
    /// SASL failed: an unknown mechanism, or the caller refused the credentials.
    SaslFailed,
    /// The peer's protocol header is not one we speak; we answered with ours.
    ProtocolMismatch([u8; 8]),
    /// The peer did not finish the handshake in time.
    HandshakeTimeout,
}

/// What happened, for the caller to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The client chose a SASL mechanism; answer with [`Connection::complete_sasl`].
    SaslInit(SaslInit),
    /// The client's `open` arrived; the connection is open.
    Opened {
        /// The client's container id.
        container_id: String,
        /// The host the client asked for.
        hostname: Option<String>,
    },
    /// A client wants to receive from us; [`Connection::accept_link`] or
    /// [`Connection::refuse_link`].
    ReceiverAttach(ReceiverAttach),
    /// A client wants to send to us; [`Connection::accept_link`] or
    /// [`Connection::refuse_link`].
    SenderAttach(SenderAttach),
    /// The credit of a link we send on changed (or the session window reopened): send up to
    /// [`Connection::link_credit`] messages. With `drain`, call [`Connection::finish_drain`]
    /// when there is nothing more to send.
    LinkCredit {
        /// The link.
        link: LinkId,
        /// The credit now.
        credit: u32,
        /// The receiver asked to drain.
        drain: bool,
    },
    /// A message arrived on a link where we receive.
    Message(IncomingMessage),
    /// A request to `$cbs` or `$management`; answer with [`Connection::respond`].
    ManagementRequest(ManagementRequest),
    /// The peer updated the state of a delivery we sent unsettled.
    DeliveryUpdated {
        /// The link.
        link: LinkId,
        /// The delivery id returned by [`Connection::send_message`].
        delivery_id: u32,
        /// The peer's outcome.
        state: Option<DeliveryState>,
        /// The peer settled it; it is forgotten.
        settled: bool,
    },
    /// A link ended without the caller asking: the peer detached it, its session ended, or
    /// a protocol error on it made us detach it.
    LinkDetached {
        /// The link.
        link: LinkId,
        /// The error, as sent by the peer or by us.
        error: Option<ErrorInfo>,
    },
    /// The connection ended. Always the last event.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    SaslInit,
    SaslDecision,
    AmqpHeader,
    Opening,
    Open,
    Closed,
}

/// What the peer told us in `open`.
#[derive(Debug, Clone, Copy)]
struct PeerLimits {
    max_frame_size: u32,
    channel_max: u16,
    idle_timeout_ms: u32,
}

#[derive(Debug)]
struct PendingRequest {
    channel: u16,
    handle: u32,
    generation: u32,
    delivery_id: u32,
    settled: bool,
    node: ManagementNode,
    /// The request's message-id exactly as encoded, to echo as correlation-id.
    message_id: Option<Vec<u8>>,
}

/// A fault found while handling a frame, by the scope it ends.
#[derive(Debug)]
enum Fault {
    Connection(ConnectionError),
    Session(u16, SessionError),
}

impl From<ConnectionError> for Fault {
    fn from(error: ConnectionError) -> Self {
        Self::Connection(error)
    }
}

impl From<FrameError> for Fault {
    fn from(error: FrameError) -> Self {
        Self::Connection(ConnectionError::Frame(error))
    }
}

/// The server side of one AMQP connection. See the module docs for the life cycle.
///
/// # Invariants
/// - `output` only ever holds whole frames (or protocol headers).
/// - Buffered input never exceeds one partial frame of at most `max_frame_size` bytes,
///   except while waiting for the caller's SASL decision, bounded by `input_buffered_max`.
/// - The number of live links is `link_count <= links_max`, and the number of sessions is
///   at most `sessions_max`.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<Event>,
    peer: PeerLimits,
    /// Sessions by our channel number.
    sessions: Vec<Option<Session>>,
    /// The peer's channel number → ours.
    remote_channels: HashMap<u16, u16>,
    /// Channels whose session the peer ended, until it begins a new one there: pyamqp sends
    /// the detaches of its `$cbs` links after its `end`, and those are dropped, not errors.
    ended_by_peer: HashSet<u16>,
    link_count: usize,
    next_generation: u32,
    requests: HashMap<u64, PendingRequest>,
    next_request: u64,
    created: Instant,
    last_received: Instant,
    last_sent: Instant,
}

impl Connection {
    /// A connection that has not received anything yet.
    pub fn new(config: Config, now: Instant) -> Self {
        assert!(
            config.max_frame_size >= frame::MAX_FRAME_SIZE_MIN,
            "max_frame_size below 512"
        );
        assert!(
            config.incoming_window > 0,
            "an incoming window of 0 blocks every client"
        );
        assert!(
            !config.mechanisms.is_empty() || config.allow_no_sasl,
            "no way to connect"
        );
        Self {
            config,
            state: State::Header,
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            peer: PeerLimits {
                max_frame_size: frame::MAX_FRAME_SIZE_MIN,
                channel_max: 0,
                idle_timeout_ms: 0,
            },
            sessions: Vec::new(),
            remote_channels: HashMap::new(),
            ended_by_peer: HashSet::new(),
            link_count: 0,
            next_generation: 0,
            requests: HashMap::new(),
            next_request: 0,
            created: now,
            last_received: now,
            last_sent: now,
        }
    }

    /// Whether the connection has ended. Once it has and [`Connection::poll_transmit`]
    /// returns nothing, the socket can go.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the AMQP `open` exchange is done and the connection is not closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Moves everything to send into `out` (appending); returns the number of bytes.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> usize {
        let len = self.output.len();
        if len == 0 {
            return 0;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut self.output);
        } else {
            out.append(&mut self.output);
        }
        self.last_sent = now;
        len
    }

    /// Bytes waiting in the transmit buffer.
    pub fn pending_transmit(&self) -> usize {
        self.output.len()
    }

    /// Bytes received but not yet processed: at most one partial frame, or the input held
    /// while a SASL decision is pending.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// The largest frame we may send: the peer's max-frame-size once its `open` arrived,
    /// 512 before.
    pub fn peer_max_frame_size(&self) -> u32 {
        self.peer.max_frame_size
    }

    /// The limits this connection enforces.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // -----------------------------------------------------------------------------------
    // Input.
    // -----------------------------------------------------------------------------------

    /// Feeds bytes read from the socket.
    pub fn handle_bytes(&mut self, bytes: &[u8], now: Instant) {
        if self.state == State::Closed || bytes.is_empty() {
            return;
        }
        self.last_received = now;
        if self.input.is_empty() {
            let used = self.process(bytes);
            if self.state != State::Closed {
                self.input.extend_from_slice(&bytes[used..]);
            }
        } else {
            self.input.extend_from_slice(bytes);
            let input = std::mem::take(&mut self.input);
            let used = self.process(&input);
            self.input = input;
            self.input.drain(..used);
        }
        if self.state == State::Closed {
            self.input = Vec::new();
        } else if self.input.len() > self.config.input_buffered_max.max(self.frame_limit()) {
            let max = self.config.input_buffered_max;
            self.fail(ConnectionError::InputBufferFull { max });
        }
    }

    /// The socket reached EOF. A peer that leaves without `close` is normal (pyamqp never
    /// waits for it), so this is one [`CloseReason::Eof`] event and nothing else.
    pub fn handle_eof(&mut self) {
        if self.state != State::Closed {
            self.terminate(CloseReason::Eof);
        }
    }

    fn frame_limit(&self) -> usize {
        self.config.max_frame_size as usize
    }

    /// Processes as much of `data` as the state allows; returns the bytes consumed.
    fn process(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        loop {
            let rest = &data[used..];
            let step = match self.state {
                State::Header | State::AmqpHeader => match rest.first_chunk::<8>() {
                    Some(header) => {
                        self.handle_protocol_header(*header);
                        frame::HEADER_BYTES
                    }
                    None => 0,
                },
                State::SaslInit => match frame::split_frame(rest, self.config.max_frame_size) {
                    Ok(Some((frame, size))) => {
                        self.handle_sasl_frame(frame);
                        size
                    }
                    Ok(None) => 0,
                    Err(error) => {
                        self.terminate(CloseReason::Error(error.into()));
                        0
                    }
                },
                State::Opening | State::Open => {
                    match frame::split_frame(rest, self.config.max_frame_size) {
                        Ok(Some((frame, size))) => {
                            if let Err(fault) = self.handle_amqp_frame(frame) {
                                self.handle_fault(fault);
                            }
                            size
                        }
                        Ok(None) => 0,
                        Err(error) => {
                            self.fail(error.into());
                            0
                        }
                    }
                }
                State::SaslDecision | State::Closed => 0,
            };
            if step == 0 {
                return used;
            }
            used += step;
        }
    }

    fn handle_protocol_header(&mut self, header: [u8; 8]) {
        match (self.state, ProtocolHeader::parse(header)) {
            (State::Header, ProtocolHeader::Sasl) if !self.config.mechanisms.is_empty() => {
                self.output.extend_from_slice(&frame::SASL_HEADER);
                let names: Vec<&str> = self.config.mechanisms.iter().map(|m| m.as_str()).collect();
                performative::write_sasl_mechanisms(&mut self.output, &names);
                self.state = State::SaslInit;
            }
            (State::Header, ProtocolHeader::Amqp) if self.config.allow_no_sasl => {
                self.start_amqp();
            }
            (State::AmqpHeader, ProtocolHeader::Amqp) => self.start_amqp(),
            (state, _) => {
                // Answer with the header we would accept, then end (AMQP 2.2).
                let ours = if state == State::Header && !self.config.mechanisms.is_empty() {
                    frame::SASL_HEADER
                } else {
                    frame::AMQP_HEADER
                };
                self.output.extend_from_slice(&ours);
                self.terminate(CloseReason::ProtocolMismatch(header));
            }
        }
    }

    fn start_amqp(&mut self) {
        self.output.extend_from_slice(&frame::AMQP_HEADER);
        let open = OpenFields {
            container_id: &self.config.container_id,
            hostname: None,
            max_frame_size: self.config.max_frame_size,
            channel_max: self.config.channel_max,
            idle_timeout_ms: self.config.idle_timeout_ms,
            offered_capabilities: None,
            properties: None,
        };
        write_frame(&mut self.output, 0, &open);
        self.state = State::Opening;
    }

    fn handle_sasl_frame(&mut self, frame: Frame<'_>) {
        if frame.header.frame_type != frame::TYPE_SASL {
            let error = FrameError::UnexpectedType {
                frame_type: frame.header.frame_type,
            };
            self.terminate(CloseReason::Error(error.into()));
            return;
        }
        match performative::decode_sasl(frame.body) {
            Ok(SaslFrame::Init(init)) => {
                match sasl::interpret_init(init, &self.config.mechanisms) {
                    Some(init) => {
                        self.events.push_back(Event::SaslInit(init));
                        self.state = State::SaslDecision;
                    }
                    None => {
                        performative::write_sasl_outcome(
                            &mut self.output,
                            SaslOutcome::Auth.code(),
                        );
                        self.terminate(CloseReason::SaslFailed);
                    }
                }
            }
            Ok(_) => {
                let error = ConnectionError::UnexpectedPerformative {
                    performative: "SASL frame other than sasl-init",
                    state: "during SASL",
                };
                self.terminate(CloseReason::Error(error));
            }
            Err(error) => self.terminate(CloseReason::Error(error.into())),
        }
    }

    /// Answers the pending [`Event::SaslInit`]. With [`SaslOutcome::Ok`], input that arrived
    /// meanwhile (a pipelined AMQP header and frames) is processed at once.
    pub fn complete_sasl(&mut self, outcome: SaslOutcome) -> Result<(), ApiError> {
        if self.state != State::SaslDecision {
            return Err(ApiError::NoSaslPending);
        }
        performative::write_sasl_outcome(&mut self.output, outcome.code());
        match outcome {
            SaslOutcome::Ok => {
                self.state = State::AmqpHeader;
                let input = std::mem::take(&mut self.input);
                let used = self.process(&input);
                if self.state != State::Closed {
                    self.input = input;
                    self.input.drain(..used);
                }
            }
            SaslOutcome::Auth => self.terminate(CloseReason::SaslFailed),
        }
        Ok(())
    }

    fn handle_amqp_frame(&mut self, frame: Frame<'_>) -> Result<(), Fault> {
        if frame.header.frame_type != frame::TYPE_AMQP {
            return Err(FrameError::UnexpectedType {
                frame_type: frame.header.frame_type,
            }
            .into());
        }
        if frame.body.is_empty() {
            return Ok(()); // A heartbeat; receiving it already refreshed the idle timer.
        }
        let (performative, len) = performative::decode(frame.body)?;
        let channel = frame.header.channel;
        if self.state == State::Opening {
            return match performative {
                Performative::Open(open) => self.handle_open(open),
                Performative::Close(close) => {
                    self.handle_close(close);
                    Ok(())
                }
                other => Err(ConnectionError::UnexpectedPerformative {
                    performative: performative::name(&other),
                    state: "before open",
                }
                .into()),
            };
        }
        match performative {
            Performative::Open(_) => Err(ConnectionError::UnexpectedPerformative {
                performative: "open",
                state: "after open",
            }
            .into()),
            Performative::Close(close) => {
                self.handle_close(close);
                Ok(())
            }
            Performative::Begin(begin) => self.handle_begin(channel, &begin),
            other => {
                let Some(&local) = self.remote_channels.get(&channel) else {
                    let late_for_ended_session = self.ended_by_peer.contains(&channel)
                        && matches!(
                            other,
                            Performative::Detach(_)
                                | Performative::Flow(_)
                                | Performative::Disposition(_)
                        );
                    if late_for_ended_session {
                        return Ok(());
                    }
                    return Err(ConnectionError::UnknownChannel { channel }.into());
                };
                self.handle_session_frame(local, other, frame.body, &frame.body[len..])
            }
        }
    }

    fn handle_open(&mut self, open: Open) -> Result<(), Fault> {
        let size = open.max_frame_size.0;
        if size < frame::MAX_FRAME_SIZE_MIN {
            return Err(ConnectionError::PeerFrameSizeTooSmall { size }.into());
        }
        self.peer = PeerLimits {
            max_frame_size: size,
            channel_max: open.channel_max.0,
            idle_timeout_ms: open.idle_time_out.unwrap_or(0),
        };
        self.state = State::Open;
        self.events.push_back(Event::Opened {
            container_id: open.container_id,
            hostname: open.hostname,
        });
        Ok(())
    }

    fn handle_close(&mut self, close: Close) {
        let error = close.error.map(error_info);
        write_frame(&mut self.output, 0, &CloseFields { error: None });
        self.terminate(CloseReason::PeerClosed { error });
    }

    fn handle_begin(&mut self, channel: u16, begin: &Begin) -> Result<(), Fault> {
        if begin.remote_channel.is_some() {
            // We never begin sessions, so there is nothing this could answer.
            return Err(ConnectionError::UnexpectedPerformative {
                performative: "begin with remote-channel",
                state: "on a server",
            }
            .into());
        }
        let max = self.config.channel_max;
        if channel > max {
            return Err(ConnectionError::ChannelMaxExceeded { channel, max }.into());
        }
        if self.remote_channels.contains_key(&channel) {
            return Err(ConnectionError::UnexpectedPerformative {
                performative: "begin",
                state: "on a channel in use",
            }
            .into());
        }
        if self.remote_channels.len() >= self.config.sessions_max {
            return Err(ConnectionError::TooManySessions {
                max: self.config.sessions_max,
            }
            .into());
        }
        let slot = self
            .sessions
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.sessions.len());
        let local = u16::try_from(slot)
            .ok()
            .filter(|&local| local <= self.peer.channel_max.min(max))
            .ok_or(ConnectionError::TooManySessions {
                max: self.config.sessions_max,
            })?;
        let session = Session {
            local_channel: local,
            remote_channel: channel,
            ending: false,
            next_outgoing_id: 0,
            remote_incoming_window: begin.incoming_window,
            blocked: false,
            next_incoming_id: begin.next_outgoing_id,
            incoming_window: self.config.incoming_window,
            incoming_window_max: self.config.incoming_window,
            peer_handle_max: begin.handle_max.0,
            links: Vec::new(),
            by_remote: HashMap::new(),
            next_delivery_id: 0,
            unsettled_out: std::collections::BTreeMap::new(),
            unsettled_max: self.config.unsettled_max,
        };
        let reply = BeginFields {
            remote_channel: Some(channel),
            next_outgoing_id: 0,
            incoming_window: self.config.incoming_window,
            outgoing_window: u32::MAX,
            handle_max: self.config.handle_max,
        };
        write_frame(&mut self.output, local, &reply);
        if slot == self.sessions.len() {
            self.sessions.push(Some(session));
        } else {
            self.sessions[slot] = Some(session);
        }
        self.remote_channels.insert(channel, local);
        self.ended_by_peer.remove(&channel);
        Ok(())
    }

    fn handle_session_frame(
        &mut self,
        local: u16,
        performative: Performative,
        body: &[u8],
        payload: &[u8],
    ) -> Result<(), Fault> {
        let session = self.session_mut(local);
        if session.ending {
            // After our end with an error, everything but the peer's end is discarded.
            if matches!(performative, Performative::End(_)) {
                self.free_session(local);
            }
            return Ok(());
        }
        match performative {
            Performative::End(end) => {
                self.handle_end(local, end);
                Ok(())
            }
            Performative::Attach(attach) => self.handle_attach(local, attach, body),
            Performative::Flow(flow) => self.handle_flow(local, &flow),
            Performative::Transfer(transfer) => self.handle_transfer(local, &transfer, payload),
            Performative::Disposition(disposition) => {
                self.handle_disposition(local, &disposition);
                Ok(())
            }
            Performative::Detach(detach) => self.handle_detach(local, detach),
            Performative::Open(_) | Performative::Begin(_) | Performative::Close(_) => {
                unreachable!("connection-level performatives are handled before sessions")
            }
        }
    }

    fn session_mut(&mut self, local: u16) -> &mut Session {
        self.sessions[usize::from(local)]
            .as_mut()
            .expect("a mapped channel has a session")
    }

    fn handle_end(&mut self, local: u16, end: End) {
        write_frame(&mut self.output, local, &EndFields { error: None });
        let error = end.error.map(error_info);
        self.end_links(local, error.as_ref());
        let remote = self.sessions[usize::from(local)]
            .as_ref()
            .expect("session exists")
            .remote_channel;
        self.free_session(local);
        // Bounded by channel-max: one entry per channel number at most.
        self.ended_by_peer.insert(remote);
    }

    /// Drops every link of a session, telling the caller about the application ones.
    fn end_links(&mut self, local: u16, error: Option<&ErrorInfo>) {
        let session = self.sessions[usize::from(local)]
            .as_mut()
            .expect("session exists");
        let links = std::mem::take(&mut session.links);
        session.by_remote.clear();
        for (handle, link) in links.into_iter().enumerate() {
            let Some(link) = link else { continue };
            self.link_count -= 1;
            let id = LinkId {
                channel: local,
                handle: handle as u32,
                generation: link.generation,
            };
            self.forget_requests(id);
            if link.kind == LinkKind::Application && link.state != LinkState::DetachSent {
                self.events.push_back(Event::LinkDetached {
                    link: id,
                    error: error.cloned(),
                });
            }
        }
    }

    fn free_session(&mut self, local: u16) {
        let session = self.sessions[usize::from(local)]
            .take()
            .expect("session exists");
        self.link_count -= session.links.iter().flatten().count();
        self.remote_channels.remove(&session.remote_channel);
    }

    fn forget_requests(&mut self, link: LinkId) {
        self.requests.retain(|_, r| {
            !(r.channel == link.channel
                && r.handle == link.handle
                && r.generation == link.generation)
        });
    }

    // -----------------------------------------------------------------------------------
    // Links.
    // -----------------------------------------------------------------------------------

    fn handle_attach(&mut self, local: u16, attach: Attach, body: &[u8]) -> Result<(), Fault> {
        let remote_handle = attach.handle.0;
        let handle_max = self.config.handle_max;
        if remote_handle > handle_max {
            let error = SessionError::HandleMaxExceeded {
                handle: remote_handle,
                max: handle_max,
            };
            return Err(Fault::Session(local, error));
        }
        let links_max = self.config.links_max;
        let generation = self.next_generation;
        let link_count = self.link_count;
        let session = self.session_mut(local);
        if session.by_remote.contains_key(&remote_handle) {
            return Err(Fault::Session(
                local,
                SessionError::HandleInUse {
                    handle: remote_handle,
                },
            ));
        }
        let too_many = || Fault::Session(local, SessionError::TooManyLinks { max: links_max });
        if link_count >= links_max {
            return Err(too_many());
        }
        let handle = session.free_handle(handle_max).ok_or_else(too_many)?;
        // Our role is the opposite of the peer's: fe2o3's role is the sender's view.
        let role = match attach.role {
            definitions::Role::Sender => Role::Receiver,
            definitions::Role::Receiver => Role::Sender,
        };
        let address = match role {
            Role::Sender => attach.source.as_ref().and_then(|s| s.address.clone()),
            Role::Receiver => match attach.target.as_deref() {
                Some(TargetArchetype::Target(target)) => target.address.clone(),
                _ => None,
            },
        };
        let node = NodeAddress::parse(address.as_deref().unwrap_or(""));
        let kind = match (&node, role) {
            (NodeAddress::Cbs, Role::Receiver) => LinkKind::ManagementRequests(ManagementNode::Cbs),
            (NodeAddress::Cbs, Role::Sender) => LinkKind::ManagementResponses(ManagementNode::Cbs),
            (NodeAddress::Management, Role::Receiver) => {
                LinkKind::ManagementRequests(ManagementNode::Management)
            }
            (NodeAddress::Management, Role::Sender) => {
                LinkKind::ManagementResponses(ManagementNode::Management)
            }
            _ => LinkKind::Application,
        };
        let echo = attach_echo(body, attach.snd_settle_mode as u8);
        let window = match kind {
            LinkKind::ManagementRequests(_) => self.config.management_window,
            _ => self.config.receiver_window,
        };
        let link = Link {
            generation,
            name: attach.name.clone(),
            role,
            state: LinkState::AttachPending,
            kind,
            echo: Some(echo),
            peer_max_message_size: attach.max_message_size,
            delivery_count: 0,
            credit: 0,
            drain: false,
            queued: VecDeque::new(),
            window,
            held: 0,
            unsettled: Vec::new(),
            partial: None,
            max_message_size: self.config.message_size_max,
        };
        let session = self.session_mut(local);
        let slot = handle as usize;
        if slot == session.links.len() {
            session.links.push(Some(link));
        } else {
            session.links[slot] = Some(link);
        }
        session.by_remote.insert(remote_handle, handle);
        self.link_count += 1;
        self.next_generation = self.next_generation.wrapping_add(1);
        let id = LinkId {
            channel: local,
            handle,
            generation,
        };
        match kind {
            LinkKind::ManagementRequests(_) | LinkKind::ManagementResponses(_) => {
                self.accept_link(id)
                    .expect("a link just attached is pending");
            }
            LinkKind::Application if role == Role::Sender => {
                let selector = attach
                    .source
                    .as_ref()
                    .and_then(|s| selector(s.filter.as_ref()?));
                let epoch = attach.properties.as_ref().and_then(|p| {
                    p.iter()
                        .find(|(k, _)| k.as_str() == "com.microsoft:epoch")
                        .and_then(|(_, v)| match v {
                            Value::Long(n) => Some(*n),
                            Value::Int(n) => Some(i64::from(*n)),
                            Value::Uint(n) => Some(i64::from(*n)),
                            Value::Ulong(n) => i64::try_from(*n).ok(),
                            _ => None,
                        })
                });
                let desired_capabilities = attach
                    .desired_capabilities
                    .map(|caps| caps.0.into_iter().map(|s| s.0).collect())
                    .unwrap_or_default();
                self.events.push_back(Event::ReceiverAttach(ReceiverAttach {
                    link: id,
                    name: attach.name,
                    address,
                    node,
                    selector,
                    epoch,
                    desired_capabilities,
                    max_message_size: attach.max_message_size,
                }));
            }
            LinkKind::Application => {
                self.events.push_back(Event::SenderAttach(SenderAttach {
                    link: id,
                    name: attach.name,
                    address,
                    node,
                }));
            }
        }
        Ok(())
    }

    /// What an attach reply needs: our max-message-size, the peer's max-frame-size.
    fn attach_limits(&self) -> (u64, u32) {
        (self.config.message_size_max, self.peer.max_frame_size)
    }

    /// Looks up a live link, checking the connection is open.
    fn link_parts(&mut self, id: LinkId) -> Result<(&mut Session, &mut Vec<u8>), ApiError> {
        if self.state != State::Open {
            return Err(ApiError::NotOpen);
        }
        let session = self
            .sessions
            .get_mut(usize::from(id.channel))
            .and_then(Option::as_mut)
            .filter(|s| !s.ending)
            .ok_or(ApiError::UnknownLink)?;
        session
            .link_mut(id.handle, id.generation)
            .ok_or(ApiError::UnknownLink)?;
        Ok((session, &mut self.output))
    }

    /// Accepts a link the client attached: writes our attach (echoing name, source with its
    /// filter, target; initial-delivery-count 0 when we send). On a link where we receive,
    /// grants [`Config::receiver_window`] credit.
    pub fn accept_link(&mut self, id: LinkId) -> Result<(), ApiError> {
        let limits = self.attach_limits();
        let (session, out) = self.link_parts(id)?;
        let channel = session.local_channel;
        let link = session.link_mut(id.handle, id.generation).expect("checked");
        if link.state != LinkState::AttachPending {
            return Err(ApiError::WrongLinkState);
        }
        if let Err(error) = write_attach_reply(out, channel, id.handle, link, limits) {
            self.fail(error);
            return Ok(());
        }
        link.state = LinkState::Attached;
        let role = link.role;
        let kind = link.kind;
        let credit = link.credit;
        let drain = link.drain;
        match role {
            Role::Receiver => {
                let link = session.link_mut(id.handle, id.generation).expect("checked");
                if link.credit_refill().is_some() {
                    let link = session.links[id.handle as usize].as_ref().expect("checked");
                    session.write_flow(out, Some((id.handle, link)), false);
                }
            }
            Role::Sender if kind == LinkKind::Application && credit > 0 => {
                self.events.push_back(Event::LinkCredit {
                    link: id,
                    credit,
                    drain,
                });
            }
            Role::Sender => {}
        }
        Ok(())
    }

    /// Refuses a link the client attached: our attach (the client needs one before the
    /// detach), then a closing detach with the error.
    pub fn refuse_link(
        &mut self,
        id: LinkId,
        condition: Condition,
        description: &str,
    ) -> Result<(), ApiError> {
        let limits = self.attach_limits();
        let (session, out) = self.link_parts(id)?;
        let channel = session.local_channel;
        let link = session.link_mut(id.handle, id.generation).expect("checked");
        if link.state != LinkState::AttachPending {
            return Err(ApiError::WrongLinkState);
        }
        if let Err(error) = write_attach_reply(out, channel, id.handle, link, limits) {
            self.fail(error);
            return Ok(());
        }
        let error = ErrorFields::new(condition, description);
        write_frame(
            out,
            channel,
            &DetachFields {
                handle: id.handle,
                closed: true,
                error: Some(error),
            },
        );
        link.state = LinkState::DetachSent;
        Ok(())
    }

    /// Detaches (closes) an attached link, e.g. with [`Condition::LinkStolen`] when a
    /// receiver with a higher epoch takes the partition.
    pub fn detach_link(
        &mut self,
        id: LinkId,
        error: Option<(Condition, &str)>,
    ) -> Result<(), ApiError> {
        let limits = self.attach_limits();
        let (session, out) = self.link_parts(id)?;
        let channel = session.local_channel;
        let link = session.link_mut(id.handle, id.generation).expect("checked");
        match link.state {
            LinkState::DetachSent => return Err(ApiError::WrongLinkState),
            LinkState::AttachPending => {
                if let Err(error) = write_attach_reply(out, channel, id.handle, link, limits) {
                    self.fail(error);
                    return Ok(());
                }
            }
            LinkState::Attached => {}
        }
        let error = error.map(|(condition, description)| ErrorFields::new(condition, description));
        write_frame(
            out,
            channel,
            &DetachFields {
                handle: id.handle,
                closed: true,
                error,
            },
        );
        link.state = LinkState::DetachSent;
        link.partial = None;
        link.queued.clear();
        Ok(())
    }

    /// How many messages can go out on a link we send on: the link credit, bounded by the
    /// session window.
    pub fn link_credit(&self, id: LinkId) -> Result<u32, ApiError> {
        let session = self
            .sessions
            .get(usize::from(id.channel))
            .and_then(Option::as_ref)
            .ok_or(ApiError::UnknownLink)?;
        let link = session
            .links
            .get(id.handle as usize)
            .and_then(Option::as_ref)
            .filter(|l| l.generation == id.generation)
            .ok_or(ApiError::UnknownLink)?;
        if link.role != Role::Sender || link.state != LinkState::Attached {
            return Ok(0);
        }
        Ok(link.credit.min(session.remote_incoming_window))
    }

    /// Sends one encoded message on a link we send on, split into frames if it is larger
    /// than the peer's max-frame-size. Returns the delivery id. Events are sent `settled`
    /// (the Event Hubs client never settles); with `settled = false` the peer's outcome
    /// comes back as [`Event::DeliveryUpdated`].
    pub fn send_message(
        &mut self,
        id: LinkId,
        message: &[u8],
        settled: bool,
    ) -> Result<u32, ApiError> {
        let max_frame_size = self.peer.max_frame_size;
        let (session, out) = self.link_parts(id)?;
        let link = session.link_mut(id.handle, id.generation).expect("checked");
        if link.role != Role::Sender
            || link.kind != LinkKind::Application
            || link.state != LinkState::Attached
        {
            return Err(ApiError::WrongLinkState);
        }
        session.send_transfer(out, id.handle, message, settled, max_frame_size)
    }

    /// Completes a drain the receiver asked for: uses up the remaining credit and tells the
    /// receiver, so it knows nothing more is coming.
    pub fn finish_drain(&mut self, id: LinkId) -> Result<(), ApiError> {
        let (session, out) = self.link_parts(id)?;
        let link = session.link_mut(id.handle, id.generation).expect("checked");
        if link.role != Role::Sender || !link.drain {
            return Err(ApiError::WrongLinkState);
        }
        link.delivery_count = link.delivery_count.wrapping_add(link.credit);
        link.credit = 0;
        let link = session.links[id.handle as usize].as_ref().expect("checked");
        session.write_flow(out, Some((id.handle, link)), false);
        Ok(())
    }

    /// Sets the credit window of a link where we receive: credit plus unsettled
    /// deliveries stay within `window`. Sends a flow when the granted credit changes.
    pub fn set_credit_window(&mut self, id: LinkId, window: u32) -> Result<u32, ApiError> {
        let (session, out) = self.link_parts(id)?;
        let link = session.link_mut(id.handle, id.generation).expect("checked");
        if link.role != Role::Receiver {
            return Err(ApiError::WrongLinkState);
        }
        link.window = window;
        let free = window.saturating_sub(link.held);
        let changed = if link.credit > free {
            link.credit = free;
            true
        } else {
            link.credit_refill().is_some()
        };
        let credit = link.credit;
        if changed && link.state == LinkState::Attached {
            let link = session.links[id.handle as usize].as_ref().expect("checked");
            session.write_flow(out, Some((id.handle, link)), false);
        }
        Ok(credit)
    }

    /// Settles an unsettled message received on `link` with `outcome`, and tops the
    /// link's credit back up.
    pub fn settle(
        &mut self,
        id: LinkId,
        delivery_id: u32,
        outcome: &Outcome,
    ) -> Result<(), ApiError> {
        let (session, out) = self.link_parts(id)?;
        let channel = session.local_channel;
        let link = session.link_mut(id.handle, id.generation).expect("checked");
        let position = link
            .unsettled
            .iter()
            .position(|&d| d == delivery_id)
            .ok_or(ApiError::UnknownDelivery)?;
        link.unsettled.swap_remove(position);
        link.held -= 1;
        let disposition = DispositionFields {
            role: Role::Receiver,
            first: delivery_id,
            last: None,
            settled: true,
            state: Some(outcome),
        };
        write_frame(out, channel, &disposition);
        refill(session, out, id.handle);
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Flow, transfer, disposition, detach.
    // -----------------------------------------------------------------------------------

    fn handle_flow(&mut self, local: u16, flow: &Flow) -> Result<(), Fault> {
        let session = self.sessions[usize::from(local)]
            .as_mut()
            .expect("session exists");
        let out = &mut self.output;
        session.remote_incoming_window = flow
            .next_incoming_id
            .unwrap_or(0)
            .wrapping_add(flow.incoming_window)
            .wrapping_sub(session.next_outgoing_id);
        let Some(remote_handle) = flow.handle.as_ref().map(|h| h.0) else {
            if session.remote_incoming_window > 0 {
                if session.blocked {
                    session.blocked = false;
                    wake_senders(session, local, &mut self.events);
                }
                // Management responses that waited for the window go now.
                let max_frame_size = self.peer.max_frame_size;
                for handle in 0..session.links.len() {
                    let waiting = session.links[handle].as_ref().is_some_and(|l| {
                        matches!(l.kind, LinkKind::ManagementResponses(_)) && !l.queued.is_empty()
                    });
                    if waiting {
                        flush_responses(session, out, handle as u32, max_frame_size);
                    }
                }
            }
            if flow.echo {
                session.write_flow(out, None, false);
            }
            return Ok(());
        };
        let handle = *session.by_remote.get(&remote_handle).ok_or(Fault::Session(
            local,
            SessionError::UnattachedHandle {
                handle: remote_handle,
            },
        ))?;
        let max_frame_size = self.peer.max_frame_size;
        let link = session.links[handle as usize]
            .as_mut()
            .expect("mapped handles have links");
        if link.state == LinkState::DetachSent {
            return Ok(());
        }
        if link.role == Role::Sender {
            link.apply_receiver_flow(flow.delivery_count, flow.link_credit.unwrap_or(0));
            link.drain = flow.drain;
            let (kind, state, credit, drain, generation) = (
                link.kind,
                link.state,
                link.credit,
                link.drain,
                link.generation,
            );
            match kind {
                LinkKind::ManagementResponses(_) => {
                    flush_responses(session, out, handle, max_frame_size);
                }
                LinkKind::Application if state == LinkState::Attached => {
                    let id = LinkId {
                        channel: local,
                        handle,
                        generation,
                    };
                    self.events.push_back(Event::LinkCredit {
                        link: id,
                        credit,
                        drain,
                    });
                }
                _ => {}
            }
        }
        if flow.echo {
            let link = session.links[handle as usize].as_ref().expect("present");
            session.write_flow(out, Some((handle, link)), false);
        }
        Ok(())
    }

    fn handle_transfer(
        &mut self,
        local: u16,
        transfer: &Transfer,
        payload: &[u8],
    ) -> Result<(), Fault> {
        let session = self.sessions[usize::from(local)]
            .as_mut()
            .expect("session exists");
        let out = &mut self.output;
        if !session.take_incoming_frame(out) {
            return Err(Fault::Session(local, SessionError::WindowViolation));
        }
        let remote_handle = transfer.handle.0;
        let handle = *session.by_remote.get(&remote_handle).ok_or(Fault::Session(
            local,
            SessionError::UnattachedHandle {
                handle: remote_handle,
            },
        ))?;
        let link = session.links[handle as usize]
            .as_mut()
            .expect("mapped handles have links");
        let id = LinkId {
            channel: local,
            handle,
            generation: link.generation,
        };
        if link.state == LinkState::DetachSent {
            return Ok(()); // In flight when we detached; dropped.
        }
        let complete = match receive_frame(link, transfer, payload) {
            Ok(complete) => complete,
            Err(error) => {
                self.fail_link(id, &error);
                return Ok(());
            }
        };
        let Some(delivery) = complete else {
            return Ok(());
        };
        match link.kind {
            LinkKind::ManagementRequests(node) => self.handle_request(id, node, &delivery),
            LinkKind::Application => {
                if !delivery.settled {
                    link.held += 1;
                    link.unsettled.push(delivery.delivery_id);
                }
                refill(session, out, handle);
                self.events.push_back(Event::Message(IncomingMessage {
                    link: id,
                    delivery_id: delivery.delivery_id,
                    delivery_tag: delivery.delivery_tag,
                    settled: delivery.settled,
                    payload: delivery.payload,
                }));
            }
            LinkKind::ManagementResponses(_) => unreachable!("receive_frame refuses our senders"),
        }
        Ok(())
    }

    /// Detaches a link on a link-level protocol error.
    fn fail_link(&mut self, id: LinkId, error: &LinkError) {
        let description = error.to_string();
        let limits = self.attach_limits();
        let session = self.sessions[usize::from(id.channel)]
            .as_mut()
            .expect("session exists");
        let channel = session.local_channel;
        let link = session
            .link_mut(id.handle, id.generation)
            .expect("link exists");
        if link.state == LinkState::AttachPending {
            // A detach needs our attach first, even while the caller is still deciding.
            if let Err(fatal) =
                write_attach_reply(&mut self.output, channel, id.handle, link, limits)
            {
                self.fail(fatal);
                return;
            }
        }
        link.state = LinkState::DetachSent;
        link.partial = None;
        let kind = link.kind;
        let fields = ErrorFields::new(error.condition(), &description);
        write_frame(
            &mut self.output,
            channel,
            &DetachFields {
                handle: id.handle,
                closed: true,
                error: Some(fields),
            },
        );
        self.forget_requests(id);
        if kind == LinkKind::Application {
            let error = ErrorInfo {
                condition: error.condition().as_str().to_string(),
                description: Some(description),
            };
            self.events.push_back(Event::LinkDetached {
                link: id,
                error: Some(error),
            });
        }
    }

    fn handle_disposition(&mut self, local: u16, disposition: &Disposition) {
        if disposition.role != definitions::Role::Receiver {
            return; // The peer settling what it sent us; in mode first we settled already.
        }
        let session = self.sessions[usize::from(local)]
            .as_mut()
            .expect("session exists");
        let first = disposition.first;
        let last = disposition.last.unwrap_or(first);
        let ids: Vec<u32> = if first <= last {
            session
                .unsettled_out
                .range(first..=last)
                .map(|(&id, _)| id)
                .collect()
        } else {
            session
                .unsettled_out
                .range(first..)
                .chain(session.unsettled_out.range(..=last))
                .map(|(&id, _)| id)
                .collect()
        };
        for delivery_id in ids {
            let (handle, generation) = if disposition.settled {
                session.unsettled_out.remove(&delivery_id).expect("listed")
            } else {
                session.unsettled_out[&delivery_id]
            };
            self.events.push_back(Event::DeliveryUpdated {
                link: LinkId {
                    channel: local,
                    handle,
                    generation,
                },
                delivery_id,
                state: disposition.state.clone(),
                settled: disposition.settled,
            });
        }
    }

    fn handle_detach(&mut self, local: u16, detach: Detach) -> Result<(), Fault> {
        let limits = self.attach_limits();
        let session = self.sessions[usize::from(local)]
            .as_mut()
            .expect("session exists");
        let remote_handle = detach.handle.0;
        let handle = session
            .by_remote
            .remove(&remote_handle)
            .ok_or(Fault::Session(
                local,
                SessionError::UnattachedHandle {
                    handle: remote_handle,
                },
            ))?;
        let mut link = session.links[handle as usize]
            .take()
            .expect("mapped handles have links");
        self.link_count -= 1;
        let id = LinkId {
            channel: local,
            handle,
            generation: link.generation,
        };
        let out = &mut self.output;
        match link.state {
            LinkState::DetachSent => {}
            LinkState::AttachPending | LinkState::Attached => {
                if link.state == LinkState::AttachPending {
                    write_attach_reply(out, local, handle, &mut link, limits)?;
                }
                let reply = DetachFields {
                    handle,
                    closed: detach.closed,
                    error: None,
                };
                write_frame(out, local, &reply);
                if link.kind == LinkKind::Application {
                    let error = detach.error.map(error_info);
                    self.events
                        .push_back(Event::LinkDetached { link: id, error });
                }
            }
        }
        self.forget_requests(id);
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Management requests.
    // -----------------------------------------------------------------------------------

    fn handle_request(&mut self, id: LinkId, node: ManagementNode, delivery: &Partial) {
        let decoded = decode_request(&delivery.payload);
        let session = self.session_mut(id.channel);
        let link = session
            .link_mut(id.handle, id.generation)
            .expect("link exists");
        link.held += 1;
        let Ok((message_id, raw_message_id, application_properties, body)) = decoded else {
            // Undecodable: reject it (a valid put-token is never rejected: pyamqp hangs on that).
            link.held -= 1;
            if !delivery.settled {
                let outcome = Outcome::Rejected {
                    condition: Condition::DecodeError,
                    description: Some("undecodable management request".into()),
                };
                let channel = session.local_channel;
                let disposition = DispositionFields {
                    role: Role::Receiver,
                    first: delivery.delivery_id,
                    last: None,
                    settled: true,
                    state: Some(&outcome),
                };
                write_frame(&mut self.output, channel, &disposition);
            }
            let session = self.sessions[usize::from(id.channel)]
                .as_mut()
                .expect("exists");
            refill(session, &mut self.output, id.handle);
            return;
        };
        let request = RequestId(self.next_request);
        self.next_request += 1;
        self.requests.insert(
            request.0,
            PendingRequest {
                channel: id.channel,
                handle: id.handle,
                generation: id.generation,
                delivery_id: delivery.delivery_id,
                settled: delivery.settled,
                node,
                message_id: raw_message_id,
            },
        );
        self.events
            .push_back(Event::ManagementRequest(ManagementRequest {
                request,
                link: id,
                node,
                message_id,
                application_properties,
                body,
            }));
    }

    /// Answers a management request: accepts and settles the request delivery, then sends
    /// a settled response on the client's receiver link of the same node with
    /// `correlation-id` = the request's message-id (same AMQP type and bytes),
    /// `status-code` as an int, `status-description` and `statusDescription`, and `body` as
    /// an amqp-value. A response that finds no credit waits for the client's flow.
    pub fn respond(
        &mut self,
        request: RequestId,
        status_code: i32,
        description: &str,
        body: Option<&Value>,
    ) -> Result<(), ApiError> {
        if self.state != State::Open {
            return Err(ApiError::NotOpen);
        }
        let body = body
            .map(serde_amqp::to_vec)
            .transpose()
            .map_err(|_| ApiError::Encode {
                detail: "response body",
            })?;
        let pending = self
            .requests
            .remove(&request.0)
            .ok_or(ApiError::UnknownRequest)?;
        let max_frame_size = self.peer.max_frame_size;
        let session = self
            .sessions
            .get_mut(usize::from(pending.channel))
            .and_then(Option::as_mut)
            .filter(|s| !s.ending)
            .ok_or(ApiError::UnknownRequest)?;
        let out = &mut self.output;
        if let Some(link) = session.link_mut(pending.handle, pending.generation) {
            link.held -= 1;
            if !pending.settled {
                let accepted = Outcome::Accepted;
                let disposition = DispositionFields {
                    role: Role::Receiver,
                    first: pending.delivery_id,
                    last: None,
                    settled: true,
                    state: Some(&accepted),
                };
                write_frame(out, session.local_channel, &disposition);
            }
            refill(session, out, pending.handle);
        }
        let message = encode_response(
            pending.message_id.as_deref(),
            status_code,
            description,
            body.as_deref(),
        );
        let reply = session.links.iter().position(|link| {
            link.as_ref().is_some_and(|l| {
                l.kind == LinkKind::ManagementResponses(pending.node)
                    && l.state == LinkState::Attached
            })
        });
        let reply = reply.ok_or(ApiError::NoReplyLink)? as u32;
        let link = session.links[reply as usize].as_mut().expect("found");
        link.queued.push_back(message);
        flush_responses(session, out, reply, max_frame_size);
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Closing and time.
    // -----------------------------------------------------------------------------------

    /// Closes the connection, with an error if given. Nothing is sent after the `close`.
    pub fn close(&mut self, error: Option<(Condition, &str)>) {
        match self.state {
            State::Closed => return,
            State::Opening | State::Open => {
                let error =
                    error.map(|(condition, description)| ErrorFields::new(condition, description));
                write_frame(&mut self.output, 0, &CloseFields { error });
            }
            _ => {}
        }
        self.terminate(CloseReason::Local);
    }

    /// Closes on a connection-level error, telling the peer when the AMQP layer is up.
    fn fail(&mut self, error: ConnectionError) {
        if matches!(self.state, State::Opening | State::Open) {
            let description = error.to_string();
            let fields = ErrorFields::new(error.condition(), &description);
            write_frame(
                &mut self.output,
                0,
                &CloseFields {
                    error: Some(fields),
                },
            );
        }
        self.terminate(CloseReason::Error(error));
    }

    fn handle_fault(&mut self, fault: Fault) {
        match fault {
            Fault::Connection(error) => self.fail(error),
            Fault::Session(local, error) => {
                let description = error.to_string();
                let info = ErrorInfo {
                    condition: error.condition().as_str().to_string(),
                    description: Some(description.clone()),
                };
                let fields = ErrorFields::new(error.condition(), &description);
                write_frame(
                    &mut self.output,
                    local,
                    &EndFields {
                        error: Some(fields),
                    },
                );
                self.end_links(local, Some(&info));
                self.session_mut(local).ending = true;
            }
        }
    }

    fn terminate(&mut self, reason: CloseReason) {
        debug_assert_ne!(self.state, State::Closed, "terminated twice");
        self.state = State::Closed;
        self.requests.clear();
        self.events.push_back(Event::Closed(reason));
    }

    /// When [`Connection::handle_timeout`] must be called next, if ever.
    pub fn next_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::Open => {
                let idle = self
                    .config
                    .idle_timeout_ms
                    .filter(|&ms| ms > 0)
                    .map(|ms| self.last_received + Duration::from_millis(u64::from(ms)));
                let heartbeat = (self.peer.idle_timeout_ms > 0).then(|| {
                    self.last_sent + Duration::from_millis(u64::from(self.peer.idle_timeout_ms / 2))
                });
                match (idle, heartbeat) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            _ => Some(
                self.created + Duration::from_millis(u64::from(self.config.handshake_timeout_ms)),
            ),
        }
    }

    /// Acts on time passing: ends a handshake that took too long, closes when the peer has
    /// been silent past our idle time-out, and queues an empty frame when we have been
    /// silent for half the peer's.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.next_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.state != State::Open {
            if matches!(self.state, State::Opening) {
                let fields =
                    ErrorFields::new(Condition::ResourceLimitExceeded, "handshake timed out");
                write_frame(
                    &mut self.output,
                    0,
                    &CloseFields {
                        error: Some(fields),
                    },
                );
            }
            self.terminate(CloseReason::HandshakeTimeout);
            return;
        }
        if let Some(ms) = self.config.idle_timeout_ms.filter(|&ms| ms > 0)
            && now >= self.last_received + Duration::from_millis(u64::from(ms))
        {
            self.fail(ConnectionError::IdleTimeout {
                idle_timeout_ms: ms,
            });
            return;
        }
        let half = u64::from(self.peer.idle_timeout_ms / 2);
        if self.peer.idle_timeout_ms > 0
            && now >= self.last_sent + Duration::from_millis(half)
            && self.output.is_empty()
        {
            self.output.extend_from_slice(&frame::EMPTY_FRAME);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers that work on one session while the connection's other fields are borrowed.
// ---------------------------------------------------------------------------------------------

/// Converts a decoded fe2o3 error.
fn error_info(error: definitions::Error) -> ErrorInfo {
    let condition = match serde_amqp::to_value(&error.condition) {
        Ok(Value::Symbol(symbol)) => symbol.0,
        _ => match &error.condition {
            ErrorCondition::Custom(symbol) => symbol.0.clone(),
            other => format!("{other:?}"),
        },
    };
    ErrorInfo {
        condition,
        description: error.description,
    }
}

/// The selector expression in a source filter set, under either descriptor.
fn selector(filter: &fe2o3_amqp_types::messaging::FilterSet) -> Option<String> {
    filter.values().find_map(|value| match value {
        Value::Described(described) => {
            let ours = match &described.descriptor {
                Descriptor::Name(name) => name.as_str() == SELECTOR_FILTER_NAME,
                Descriptor::Code(code) => *code == SELECTOR_FILTER_CODE,
            };
            match &described.value {
                Value::String(expression) if ours => Some(expression.clone()),
                _ => None,
            }
        }
        _ => None,
    })
}

/// The raw source, target and desired capabilities of an attach body, for the reply.
fn attach_echo(body: &[u8], snd_settle_mode: u8) -> AttachEcho {
    let fields = codec::value_len(&body[1..])
        .ok()
        .and_then(|descriptor| codec::list_fields(&body[1 + descriptor..]).ok().flatten())
        .unwrap_or_default();
    let raw = |index: usize| {
        fields
            .get(index)
            .filter(|field| field.first() != Some(&codec::code::NULL))
            .map(|field| field.to_vec())
    };
    AttachEcho {
        source: raw(5),
        target: raw(6),
        capabilities: raw(12),
        snd_settle_mode,
    }
}

/// Writes our attach for a link the peer attached. An attach echoes what the client sent
/// (name, source, target, capabilities), so with a small peer max-frame-size it may not fit:
/// then nothing is written and the connection must close with `amqp:frame-size-too-small`.
fn write_attach_reply(
    out: &mut Vec<u8>,
    channel: u16,
    handle: u32,
    link: &mut Link,
    limits: (u64, u32),
) -> Result<(), ConnectionError> {
    let (message_size_max, frame_max) = limits;
    let echo = link.echo.take().unwrap_or_default();
    let fields = AttachFields {
        name: &link.name,
        handle,
        role: link.role,
        snd_settle_mode: echo.snd_settle_mode,
        // As the receiver we settle first: the client then needs no second round.
        rcv_settle_mode: 0,
        source: echo.source.as_deref(),
        target: echo.target.as_deref(),
        initial_delivery_count: (link.role == Role::Sender).then_some(0),
        max_message_size: Some(message_size_max),
        offered_capabilities: echo.capabilities.as_deref(),
        desired_capabilities: None,
        properties: None,
    };
    let start = out.len();
    if write_frame(out, channel, &fields) > frame_max as usize {
        out.truncate(start);
        return Err(ConnectionError::PeerFrameSizeTooSmall { size: frame_max });
    }
    Ok(())
}

/// Grants credit on a link where we receive, if its refill point is reached.
fn refill(session: &mut Session, out: &mut Vec<u8>, handle: u32) {
    let Some(link) = session
        .links
        .get_mut(handle as usize)
        .and_then(Option::as_mut)
    else {
        return;
    };
    if link.state == LinkState::Attached && link.credit_refill().is_some() {
        let link = session.links[handle as usize].as_ref().expect("present");
        session.write_flow(out, Some((handle, link)), false);
    }
}

/// Tells the caller about every application sender link with credit, after the session
/// window reopened.
fn wake_senders(session: &Session, local: u16, events: &mut VecDeque<Event>) {
    for (handle, link) in session.links.iter().enumerate() {
        let Some(link) = link else { continue };
        if link.role == Role::Sender
            && link.kind == LinkKind::Application
            && link.state == LinkState::Attached
            && link.credit > 0
        {
            let id = LinkId {
                channel: local,
                handle: handle as u32,
                generation: link.generation,
            };
            events.push_back(Event::LinkCredit {
                link: id,
                credit: link.credit,
                drain: link.drain,
            });
        }
    }
}

/// Sends queued management responses while credit and window allow; completes a drain
/// when the queue is empty.
fn flush_responses(session: &mut Session, out: &mut Vec<u8>, handle: u32, max_frame_size: u32) {
    loop {
        let link = session.links[handle as usize].as_mut().expect("present");
        let Some(message) = link.queued.pop_front() else {
            break;
        };
        if session
            .send_transfer(out, handle, &message, true, max_frame_size)
            .is_err()
        {
            let link = session.links[handle as usize].as_mut().expect("present");
            link.queued.push_front(message);
            return;
        }
    }
    let link = session.links[handle as usize].as_mut().expect("present");
    if link.drain && link.credit > 0 {
        link.delivery_count = link.delivery_count.wrapping_add(link.credit);
        link.credit = 0;
        let link = session.links[handle as usize].as_ref().expect("present");
        session.write_flow(out, Some((handle, link)), false);
    }
}

/// Adds one transfer frame to a link where we receive. Returns the delivery once its last
/// frame is in.
fn receive_frame(
    link: &mut Link,
    transfer: &Transfer,
    payload: &[u8],
) -> Result<Option<Partial>, LinkError> {
    if link.role != Role::Receiver {
        return Err(LinkError::TransferOnReceivingLink);
    }
    if link.state != LinkState::Attached {
        return Err(LinkError::TransferLimitExceeded);
    }
    let partial = match link.partial.take() {
        Some(partial) => {
            if transfer
                .delivery_id
                .is_some_and(|id| id != partial.delivery_id)
            {
                return Err(LinkError::BadDeliveryId);
            }
            partial
        }
        None => {
            let delivery_id = transfer.delivery_id.ok_or(LinkError::BadDeliveryId)?;
            if link.credit == 0 {
                return Err(LinkError::TransferLimitExceeded);
            }
            link.credit -= 1;
            link.delivery_count = link.delivery_count.wrapping_add(1);
            Partial {
                delivery_id,
                delivery_tag: transfer
                    .delivery_tag
                    .as_ref()
                    .map(|t| t.to_vec())
                    .unwrap_or_default(),
                settled: false,
                payload: Vec::new(),
            }
        }
    };
    if transfer.aborted {
        return Ok(None);
    }
    let mut partial = partial;
    let size = (partial.payload.len() + payload.len()) as u64;
    if size > link.max_message_size {
        return Err(LinkError::MessageSizeExceeded {
            size,
            max: link.max_message_size,
        });
    }
    partial.payload.extend_from_slice(payload);
    partial.settled |= transfer.settled.unwrap_or(false);
    if transfer.more {
        link.partial = Some(partial);
        Ok(None)
    } else {
        Ok(Some(partial))
    }
}

type DecodedRequest = (
    Option<MessageId>,
    Option<Vec<u8>>,
    Vec<(String, fe2o3_amqp_types::primitives::SimpleValue)>,
    Option<Value>,
);

/// The parts of a management request message.
fn decode_request(payload: &[u8]) -> Result<DecodedRequest, crate::error::MessageError> {
    let sections = Sections::split(payload)?;
    let properties = sections.decode_properties()?;
    let raw_message_id = sections.properties_field(0).map(<[u8]>::to_vec);
    let application_properties = sections.decode_application_properties()?;
    let body = sections.value_body()?;
    Ok((
        properties.and_then(|p| p.message_id),
        raw_message_id,
        application_properties,
        body,
    ))
}

/// Encodes a management response message.
fn encode_response(
    correlation_id: Option<&[u8]>,
    status_code: i32,
    description: &str,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + description.len() * 2 + body.map_or(0, <[u8]>::len));
    if let Some(id) = correlation_id {
        codec::put_descriptor(&mut out, section::PROPERTIES);
        let list = Compound::begin_list(&mut out);
        // message-id, user-id, to, subject, reply-to are null; correlation-id is field 5.
        out.extend_from_slice(&[codec::code::NULL; 5]);
        out.extend_from_slice(id);
        list.end(&mut out, 6);
    }
    codec::put_descriptor(&mut out, section::APPLICATION_PROPERTIES);
    let map = Compound::begin_map(&mut out);
    codec::put_str(&mut out, "status-code");
    codec::put_int(&mut out, status_code);
    codec::put_str(&mut out, "status-description");
    codec::put_str(&mut out, description);
    codec::put_str(&mut out, "statusDescription");
    codec::put_str(&mut out, description);
    map.end(&mut out, 6);
    codec::put_descriptor(&mut out, section::AMQP_VALUE);
    match body {
        Some(body) => out.extend_from_slice(body),
        None => codec::put_null(&mut out),
    }
    out
}
