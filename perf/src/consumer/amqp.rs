//! A minimal Event Hubs partition receiver, sans IO: the client side of the handshake, the CBS
//! put-token and the partition attach below, written with `dataplane_amqp`'s frame and
//! performative writers and decoded with its fe2o3-based readers.
//!
//! ```text
//! client                                         server
//!   AMQP 3 1 0 0                 ─────────────▶
//!                                ◀─────────────  AMQP 3 1 0 0, sasl-mechanisms [.. ANONYMOUS ..]
//!   sasl-init ANONYMOUS          ─────────────▶
//!                                ◀─────────────  sasl-outcome ok
//!   AMQP 0 1 0 0, open, begin,
//!   attach $cbs (sender, h0),
//!   attach $cbs (receiver, h1),
//!   flow h1 credit               ─────────────▶
//!                                ◀─────────────  AMQP 0 1 0 0, open, begin, attach ×2, flow h0
//!   transfer h0: put-token       ─────────────▶
//!                                ◀─────────────  disposition, transfer h1: status-code 200
//!   attach partition (receiver,
//!   h2, selector filter),
//!   flow h2 credit               ─────────────▶
//!                                ◀─────────────  attach, transfer h2 … (settled events)
//! ```
//!
//! Credit is topped up to the full window whenever half of it is used, and the session
//! window likewise, so a fast server is never throttled by the consumer's bookkeeping.

use std::collections::VecDeque;

use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::frame::{self, AMQP_HEADER, HEADER_BYTES, SASL_HEADER};
use dataplane_amqp::message::Sections;
use dataplane_amqp::performative::{
    self, AttachFields, BeginFields, CloseFields, DispositionFields, FlowFields, LinkFlowFields,
    OpenFields, Outcome, Role, SaslFrame, TransferFields,
};
use fe2o3_amqp_types::performatives::Performative;
use fe2o3_amqp_types::primitives::SimpleValue;
use fe2o3_amqp_types::sasl::SaslCode;

/// Link handles this client uses.
pub const CBS_SENDER: u32 = 0;
/// The `$cbs` response link.
pub const CBS_RECEIVER: u32 = 1;
/// The partition receiver.
pub const PARTITION: u32 = 2;
/// The largest frame we accept.
pub const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Our session incoming window, in transfer frames.
pub const INCOMING_WINDOW: u32 = 65_536;
/// The message-id of the put-token request (ulong, as uamqp sends it).
pub const PUT_TOKEN_MESSAGE_ID: u64 = 1;

/// What a receiver needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverParams {
    /// `open.hostname` and SASL hostname: the namespace host without a port.
    pub hostname: String,
    /// The CBS audience, `sb://{host}/{hub}/consumergroups/{cg}`.
    pub audience: String,
    /// The SAS token for the audience.
    pub token: String,
    /// Token expiry, seconds since the Unix epoch (sent as the `expiration` timestamp).
    pub token_expiry_secs: u64,
    /// `amqps://{host}/{hub}/ConsumerGroups/{cg}/Partitions/{pid}`.
    pub source_address: String,
    /// The selector, e.g. `amqp.annotation.x-opt-offset > '@latest'`.
    pub selector: String,
    /// Link credit to keep granted.
    pub credit: u32,
    /// Our container id.
    pub container_id: String,
}

/// An Event Hubs-compatible endpoint and the credentials to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHub {
    /// The namespace host dialled (no port).
    pub host: String,
    /// The host in the token audience (as the client's Endpoint names it).
    pub audience_host: String,
    /// The event hub name.
    pub hub: String,
    /// The consumer group.
    pub consumer_group: String,
    /// The shared access policy name.
    pub policy: String,
    /// Its key, as a string: Event Hubs signs with the key's UTF-8 bytes, not its base64
    /// decoding.
    pub key: String,
}

impl ReceiverParams {
    /// The parameters for one partition of `hub`, with a token valid until `expiry_secs`,
    /// reading events after `offset` (`@latest`: only new ones; `-1`: from the start).
    pub fn for_partition(
        hub: &EventHub,
        partition: u32,
        offset: &str,
        expiry_secs: u64,
        credit: u32,
    ) -> Self {
        let audience = format!(
            "sb://{}/{}/consumergroups/{}",
            hub.audience_host, hub.hub, hub.consumer_group
        );
        let token = dataplane_wire::sas::generate(
            &audience,
            hub.key.as_bytes(),
            expiry_secs,
            Some(&hub.policy),
        );
        Self {
            hostname: hub.host.clone(),
            audience,
            token,
            token_expiry_secs: expiry_secs,
            source_address: format!(
                "amqps://{}/{}/ConsumerGroups/{}/Partitions/{partition}",
                hub.host, hub.hub, hub.consumer_group
            ),
            selector: format!("amqp.annotation.x-opt-offset > '{offset}'"),
            credit,
            container_id: format!("shoal-perf-partition{partition}"),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The put-token was answered with a 2xx status.
    Authorized,
    /// The server attached the partition link: events flow from here.
    Attached,
    /// One event (the whole encoded message).
    Message(Vec<u8>),
    /// The exchange failed; nothing more will happen.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    SaslHeader,
    SaslMechanisms,
    SaslOutcome,
    AmqpHeader,
    Frames,
    Closed,
}

/// The client state machine.
///
/// # Invariants
/// - `output` only holds whole frames and protocol headers.
/// - Granted credit never exceeds `params.credit`; it is replenished after half is used.
#[derive(Debug)]
pub struct ReceiverClient {
    params: ReceiverParams,
    stage: Stage,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<ClientEvent>,
    /// Credit the server gave our `$cbs` sender.
    cbs_credit: u32,
    put_token_sent: bool,
    authorized: bool,
    partition_attach_sent: bool,
    /// Our next transfer id (we send one transfer: the put-token).
    next_outgoing_id: u32,
    /// The server's next transfer id as we expect it.
    next_incoming_id: Option<u32>,
    /// Transfer frames the server may still send before we widen the window.
    incoming_window: u32,
    /// Partition link: deliveries received and credit left.
    delivery_count: u32,
    credit_left: u32,
    /// A multi-frame delivery being reassembled.
    partial: Vec<u8>,
    /// The server's idle time-out: we must send something at least half this often.
    peer_idle_timeout_ms: Option<u32>,
    /// Events received.
    pub received: u64,
}

fn fail(events: &mut VecDeque<ClientEvent>, stage: &mut Stage, why: String) {
    if *stage != Stage::Closed {
        *stage = Stage::Closed;
        events.push_back(ClientEvent::Failed(why));
    }
}

impl ReceiverClient {
    /// A client that has written its SASL header.
    pub fn new(params: ReceiverParams) -> Self {
        assert!(params.credit > 0, "a receiver grants credit");
        let mut output = Vec::with_capacity(4096);
        output.extend_from_slice(&SASL_HEADER);
        Self {
            params,
            stage: Stage::SaslHeader,
            input: Vec::new(),
            output,
            events: VecDeque::new(),
            cbs_credit: 0,
            put_token_sent: false,
            authorized: false,
            partition_attach_sent: false,
            next_outgoing_id: 0,
            next_incoming_id: None,
            incoming_window: INCOMING_WINDOW,
            delivery_count: 0,
            credit_left: 0,
            partial: Vec::new(),
            peer_idle_timeout_ms: None,
            received: 0,
        }
    }

    /// Bytes to write to the socket; `out` is appended to.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.output.len();
        out.append(&mut self.output);
        n
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// How often something must be sent to keep the server's idle timer quiet, if at all.
    pub fn keepalive_interval_ms(&self) -> Option<u32> {
        self.peer_idle_timeout_ms.map(|ms| (ms / 2).max(1))
    }

    /// Queues a heartbeat (an empty frame).
    pub fn heartbeat(&mut self) {
        if self.stage == Stage::Frames {
            self.output.extend_from_slice(&frame::EMPTY_FRAME);
        }
    }

    /// Sends `close` and ends the exchange.
    pub fn close(&mut self) {
        if self.stage == Stage::Frames {
            performative::write_frame(&mut self.output, 0, &CloseFields { error: None });
        }
        self.stage = Stage::Closed;
    }

    /// The peer closed the socket.
    pub fn handle_eof(&mut self) {
        fail(
            &mut self.events,
            &mut self.stage,
            "the server closed the connection".into(),
        );
    }

    /// Feeds received bytes.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        let mut input = std::mem::take(&mut self.input);
        input.extend_from_slice(bytes);
        let mut at = 0;
        while self.stage != Stage::Closed {
            let rest = &input[at..];
            match self.stage {
                Stage::SaslHeader | Stage::AmqpHeader => {
                    let Some(header) = rest.first_chunk::<HEADER_BYTES>() else {
                        break;
                    };
                    let expected = if self.stage == Stage::SaslHeader {
                        SASL_HEADER
                    } else {
                        AMQP_HEADER
                    };
                    if *header != expected {
                        let why = format!("unexpected protocol header {header:02x?}");
                        fail(&mut self.events, &mut self.stage, why);
                        break;
                    }
                    at += HEADER_BYTES;
                    self.stage = if self.stage == Stage::SaslHeader {
                        Stage::SaslMechanisms
                    } else {
                        Stage::Frames
                    };
                }
                Stage::SaslMechanisms | Stage::SaslOutcome | Stage::Frames => {
                    let (frame, used) = match frame::split_frame(rest, MAX_FRAME_SIZE) {
                        Ok(Some(found)) => found,
                        Ok(None) => break,
                        Err(error) => {
                            fail(
                                &mut self.events,
                                &mut self.stage,
                                format!("bad frame: {error}"),
                            );
                            break;
                        }
                    };
                    at += used;
                    if self.stage == Stage::Frames {
                        if !frame.body.is_empty() {
                            self.handle_frame(frame.body);
                        }
                    } else {
                        self.handle_sasl(frame.body);
                    }
                }
                Stage::Closed => break,
            }
        }
        input.drain(..at.min(input.len()));
        self.input = input;
    }

    fn handle_sasl(&mut self, body: &[u8]) {
        let decoded = performative::decode_sasl(body);
        match (self.stage, decoded) {
            (Stage::SaslMechanisms, Ok(SaslFrame::Mechanisms(m))) => {
                let offered: Vec<String> = m
                    .sasl_server_mechanisms
                    .0
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect();
                if !offered.iter().any(|m| m == "ANONYMOUS") {
                    let why = format!("the server offers no SASL ANONYMOUS (offers {offered:?})");
                    fail(&mut self.events, &mut self.stage, why);
                    return;
                }
                performative::write_sasl_init(
                    &mut self.output,
                    "ANONYMOUS",
                    Some(&[]),
                    Some(&self.params.hostname),
                );
                self.stage = Stage::SaslOutcome;
            }
            (Stage::SaslOutcome, Ok(SaslFrame::Outcome(outcome))) => {
                if outcome.code != SaslCode::Ok {
                    let why = format!("SASL failed: {:?}", outcome.code);
                    fail(&mut self.events, &mut self.stage, why);
                    return;
                }
                self.stage = Stage::AmqpHeader;
                self.write_open();
            }
            (_, Ok(other)) => {
                let why = format!("unexpected SASL frame {other:?}");
                fail(&mut self.events, &mut self.stage, why);
            }
            (_, Err(error)) => fail(
                &mut self.events,
                &mut self.stage,
                format!("bad SASL frame: {error}"),
            ),
        }
    }

    /// Header, open, begin, both `$cbs` links, and credit for the response link: pipelined
    /// like pyamqp does.
    fn write_open(&mut self) {
        let out = &mut self.output;
        out.extend_from_slice(&AMQP_HEADER);
        performative::write_frame(
            out,
            0,
            &OpenFields {
                container_id: &self.params.container_id,
                hostname: Some(&self.params.hostname),
                max_frame_size: MAX_FRAME_SIZE,
                channel_max: 0,
                idle_timeout_ms: None,
                offered_capabilities: None,
                properties: None,
            },
        );
        performative::write_frame(
            out,
            0,
            &BeginFields {
                remote_channel: None,
                next_outgoing_id: 0,
                incoming_window: INCOMING_WINDOW,
                outgoing_window: INCOMING_WINDOW,
                handle_max: 7,
            },
        );
        let cbs = terminus(performative::descriptor::SOURCE, "$cbs");
        let cbs_target = terminus(performative::descriptor::TARGET, "$cbs");
        for (handle, role, name) in [
            (CBS_SENDER, Role::Sender, "cbs-sender"),
            (CBS_RECEIVER, Role::Receiver, "cbs-receiver"),
        ] {
            performative::write_frame(
                out,
                0,
                &AttachFields {
                    name,
                    handle,
                    role,
                    snd_settle_mode: 0,
                    rcv_settle_mode: 0,
                    source: Some(&cbs),
                    target: Some(&cbs_target),
                    initial_delivery_count: (role == Role::Sender).then_some(0),
                    max_message_size: None,
                    offered_capabilities: None,
                    desired_capabilities: None,
                    properties: None,
                },
            );
        }
        let flow = self.flow(CBS_RECEIVER, 0, 16);
        performative::write_frame(&mut self.output, 0, &flow);
    }

    fn flow(&self, handle: u32, delivery_count: u32, credit: u32) -> FlowFields {
        FlowFields {
            next_incoming_id: self.next_incoming_id,
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: INCOMING_WINDOW,
            link: Some(LinkFlowFields {
                handle,
                delivery_count: Some(delivery_count),
                link_credit: Some(credit),
                available: None,
                drain: false,
            }),
            echo: false,
        }
    }

    fn handle_frame(&mut self, body: &[u8]) {
        let (decoded, len) = match performative::decode(body) {
            Ok(found) => found,
            Err(error) => {
                fail(
                    &mut self.events,
                    &mut self.stage,
                    format!("bad performative: {error}"),
                );
                return;
            }
        };
        let payload = &body[len..];
        match decoded {
            Performative::Open(open) => {
                self.peer_idle_timeout_ms = open.idle_time_out.filter(|ms| *ms > 0);
            }
            Performative::Begin(begin) => self.next_incoming_id = Some(begin.next_outgoing_id),
            Performative::Attach(attach) => {
                if attach.handle.0 == PARTITION {
                    if attach.source.is_none() {
                        // A refused attach: the detach with the reason follows.
                        return;
                    }
                    self.events.push_back(ClientEvent::Attached);
                }
            }
            Performative::Flow(flow) => {
                if flow.handle.map(|h| h.0) == Some(CBS_SENDER) {
                    let receiver_count = flow.delivery_count.unwrap_or(0);
                    let credit = flow.link_credit.unwrap_or(0);
                    let sent = u32::from(self.put_token_sent);
                    self.cbs_credit = receiver_count.wrapping_add(credit).wrapping_sub(sent);
                    self.maybe_send_put_token();
                }
            }
            Performative::Transfer(transfer) => self.handle_transfer(&transfer, payload),
            Performative::Disposition(_) => {}
            Performative::Detach(detach) => {
                let why = detach
                    .error
                    .map_or_else(|| "no error given".to_owned(), |e| e.to_string());
                let link = match detach.handle.0 {
                    PARTITION => "partition",
                    _ => "$cbs",
                };
                fail(
                    &mut self.events,
                    &mut self.stage,
                    format!("the server detached the {link} link: {why}"),
                );
            }
            Performative::End(end) => {
                let why = end
                    .error
                    .map_or_else(|| "no error given".to_owned(), |e| e.to_string());
                fail(
                    &mut self.events,
                    &mut self.stage,
                    format!("the server ended the session: {why}"),
                );
            }
            Performative::Close(close) => {
                let why = close
                    .error
                    .map_or_else(|| "no error given".to_owned(), |e| e.to_string());
                fail(
                    &mut self.events,
                    &mut self.stage,
                    format!("the server closed the connection: {why}"),
                );
            }
        }
    }

    fn maybe_send_put_token(&mut self) {
        if self.put_token_sent || self.cbs_credit == 0 {
            return;
        }
        let mut message = Vec::with_capacity(512);
        encode_put_token(&self.params, &mut message);
        let start = frame::begin_frame(&mut self.output, frame::TYPE_AMQP, 0);
        performative::Encode::encode(
            &TransferFields {
                handle: CBS_SENDER,
                delivery_id: Some(self.next_outgoing_id),
                delivery_tag: Some(&self.next_outgoing_id.to_be_bytes()),
                message_format: Some(0),
                settled: Some(false),
                more: false,
                aborted: false,
            },
            &mut self.output,
        );
        self.output.extend_from_slice(&message);
        frame::end_frame(&mut self.output, start);
        self.next_outgoing_id = self.next_outgoing_id.wrapping_add(1);
        self.put_token_sent = true;
        self.cbs_credit -= 1;
    }

    fn handle_transfer(
        &mut self,
        transfer: &fe2o3_amqp_types::performatives::Transfer,
        payload: &[u8],
    ) {
        self.next_incoming_id = self.next_incoming_id.map(|id| id.wrapping_add(1));
        self.incoming_window = self.incoming_window.saturating_sub(1);
        let handle = transfer.handle.0;
        let first_frame = self.partial.is_empty();
        if handle == PARTITION && first_frame {
            self.delivery_count = self.delivery_count.wrapping_add(1);
            self.credit_left = self.credit_left.saturating_sub(1);
        }
        if transfer.more {
            self.partial.extend_from_slice(payload);
            self.widen_windows();
            return;
        }
        let whole: Vec<u8> = if first_frame {
            payload.to_vec()
        } else {
            let mut joined = std::mem::take(&mut self.partial);
            joined.extend_from_slice(payload);
            joined
        };
        if transfer.settled != Some(true)
            && let Some(id) = transfer.delivery_id
        {
            let accepted = Outcome::Accepted;
            performative::write_frame(
                &mut self.output,
                0,
                &DispositionFields {
                    role: Role::Receiver,
                    first: id,
                    last: None,
                    settled: true,
                    state: Some(&accepted),
                },
            );
        }
        match handle {
            CBS_RECEIVER => self.handle_put_token_response(&whole),
            PARTITION => {
                self.received += 1;
                self.events.push_back(ClientEvent::Message(whole));
            }
            _ => {}
        }
        self.widen_windows();
    }

    /// Tops up link credit and the session window once half is used.
    fn widen_windows(&mut self) {
        let low_credit = self.authorized && self.credit_left <= self.params.credit / 2;
        let low_window = self.incoming_window <= INCOMING_WINDOW / 2;
        if !(low_credit || low_window) {
            return;
        }
        self.incoming_window = INCOMING_WINDOW;
        if low_credit {
            self.credit_left = self.params.credit;
        }
        let flow = if self.authorized {
            self.flow(PARTITION, self.delivery_count, self.credit_left)
        } else {
            FlowFields {
                link: None,
                ..self.flow(PARTITION, 0, 0)
            }
        };
        performative::write_frame(&mut self.output, 0, &flow);
    }

    fn handle_put_token_response(&mut self, message: &[u8]) {
        match parse_put_token_response(message) {
            Ok(status) if (200..300).contains(&status.code) => {
                if status.correlates {
                    self.authorized = true;
                    self.events.push_back(ClientEvent::Authorized);
                    self.attach_partition();
                } else {
                    let why = "put-token response does not correlate with the request".to_owned();
                    fail(&mut self.events, &mut self.stage, why);
                }
            }
            Ok(status) => {
                let why = format!("put-token refused: {} {}", status.code, status.description);
                fail(&mut self.events, &mut self.stage, why);
            }
            Err(why) => fail(
                &mut self.events,
                &mut self.stage,
                format!("put-token response: {why}"),
            ),
        }
    }

    fn attach_partition(&mut self) {
        if self.partition_attach_sent {
            return;
        }
        self.partition_attach_sent = true;
        let source = partition_source(&self.params.source_address, &self.params.selector);
        let target = terminus(performative::descriptor::TARGET, "receiver-link-shoal-perf");
        performative::write_frame(
            &mut self.output,
            0,
            &AttachFields {
                name: &self.params.container_id,
                handle: PARTITION,
                role: Role::Receiver,
                snd_settle_mode: 0,
                rcv_settle_mode: 0,
                source: Some(&source),
                target: Some(&target),
                initial_delivery_count: None,
                max_message_size: Some(u64::from(MAX_FRAME_SIZE)),
                offered_capabilities: None,
                desired_capabilities: None,
                properties: None,
            },
        );
        self.credit_left = self.params.credit;
        let flow = self.flow(PARTITION, self.delivery_count, self.credit_left);
        performative::write_frame(&mut self.output, 0, &flow);
    }
}

/// An encoded source or target terminus holding only an address.
pub fn terminus(descriptor: u8, address: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    codec::put_descriptor(&mut buf, descriptor);
    let list = Compound::begin_list(&mut buf);
    codec::put_str(&mut buf, address);
    list.end(&mut buf, 1);
    buf
}

/// The partition source: the address and the selector filter under its symbolic
/// descriptor, as azure-eventhub sends it.
pub fn partition_source(address: &str, selector: &str) -> Vec<u8> {
    use dataplane_amqp::address::SELECTOR_FILTER_NAME;
    let mut buf = Vec::new();
    codec::put_descriptor(&mut buf, performative::descriptor::SOURCE);
    let list = Compound::begin_list(&mut buf);
    codec::put_str(&mut buf, address);
    // durable, expiry-policy, timeout, dynamic, dynamic-node-properties, distribution-mode.
    for _ in 0..6 {
        codec::put_null(&mut buf);
    }
    let filter = Compound::begin_map(&mut buf);
    codec::put_sym(&mut buf, SELECTOR_FILTER_NAME);
    buf.push(codec::code::DESCRIBED);
    codec::put_sym(&mut buf, SELECTOR_FILTER_NAME);
    codec::put_str(&mut buf, selector);
    filter.end(&mut buf, 2);
    list.end(&mut buf, 8);
    buf
}

/// Appends the put-token request message (properties, application properties, amqp-value
/// body).
pub fn encode_put_token(params: &ReceiverParams, out: &mut Vec<u8>) {
    use dataplane_amqp::message::section;
    codec::put_descriptor(out, section::PROPERTIES);
    let list = Compound::begin_list(out);
    codec::put_ulong(out, PUT_TOKEN_MESSAGE_ID);
    list.end(out, 1);
    codec::put_descriptor(out, section::APPLICATION_PROPERTIES);
    let map = Compound::begin_map(out);
    codec::put_str(out, "operation");
    codec::put_str(out, "put-token");
    codec::put_str(out, "type");
    codec::put_str(out, dataplane_amqp::management::PutToken::SAS_TOKEN_TYPE);
    codec::put_str(out, "name");
    codec::put_str(out, &params.audience);
    codec::put_str(out, "expiration");
    codec::put_timestamp(out, (params.token_expiry_secs * 1000) as i64);
    map.end(out, 8);
    codec::put_descriptor(out, section::AMQP_VALUE);
    codec::put_str(out, &params.token);
}

/// What a put-token response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutTokenStatus {
    /// `status-code`.
    pub code: i64,
    /// `status-description` (or `statusDescription`).
    pub description: String,
    /// The correlation-id is our request's message-id.
    pub correlates: bool,
}

/// Reads a put-token response.
pub fn parse_put_token_response(message: &[u8]) -> Result<PutTokenStatus, String> {
    let sections = Sections::split(message).map_err(|e| e.to_string())?;
    let properties = sections
        .decode_application_properties()
        .map_err(|e| e.to_string())?;
    let code = properties
        .iter()
        .find(|(k, _)| k == "status-code")
        .and_then(|(_, v)| match v {
            SimpleValue::Int(n) => Some(i64::from(*n)),
            SimpleValue::Long(n) => Some(*n),
            SimpleValue::Uint(n) => Some(i64::from(*n)),
            SimpleValue::Short(n) => Some(i64::from(*n)),
            _ => None,
        })
        .ok_or_else(|| "no integer status-code".to_owned())?;
    let description = properties
        .iter()
        .find(|(k, _)| k == "status-description" || k == "statusDescription")
        .and_then(|(_, v)| match v {
            SimpleValue::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    // correlation-id is properties field 5.
    let mut expected = Vec::new();
    codec::put_ulong(&mut expected, PUT_TOKEN_MESSAGE_ID);
    let correlates = sections.properties_field(5) == Some(expected.as_slice());
    Ok(PutTokenStatus {
        code,
        description,
        correlates,
    })
}

/// The bytes of the first data section of an encoded message, without copying.
pub fn data_body(message: &[u8]) -> Option<&[u8]> {
    let mut rest = message;
    while !rest.is_empty() {
        let len = codec::value_len(rest).ok()?;
        let (section, tail) = rest.split_at(len);
        if let Some((descriptor, offset)) = codec::numeric_descriptor(section)
            && descriptor == u64::from(dataplane_amqp::message::section::DATA)
        {
            let value = &section[offset..];
            return match value.first() {
                Some(&codec::code::VBIN8) => value.get(2..),
                Some(&codec::code::VBIN32) => value.get(5..),
                _ => None,
            };
        }
        rest = tail;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane_amqp::sasl::SaslOutcome as ServerSaslOutcome;
    use dataplane_amqp::{Config, Connection, Event};
    use std::time::Instant;

    fn params() -> ReceiverParams {
        let hub = EventHub {
            host: "localhost".into(),
            audience_host: "localhost".into(),
            hub: "shoal".into(),
            consumer_group: "$Default".into(),
            policy: "iothubowner".into(),
            key: "a2V5".into(),
        };
        ReceiverParams::for_partition(&hub, 3, "@latest", 1_700_000_000, 10)
    }

    #[test]
    fn partition_source_carries_address_and_selector_as_the_server_reads_them() {
        // The server side of dataplane-amqp decodes the attach and parses the selector.
        let source = partition_source(
            "amqps://localhost/shoal/ConsumerGroups/$Default/Partitions/3",
            "amqp.annotation.x-opt-offset > '@latest'",
        );
        let decoded: fe2o3_amqp_types::messaging::Source =
            serde_amqp::from_slice(&source).expect("a valid source");
        assert_eq!(
            decoded.address.as_deref(),
            Some("amqps://localhost/shoal/ConsumerGroups/$Default/Partitions/3")
        );
        let filter = decoded.filter.expect("a filter set");
        assert_eq!(filter.len(), 1);
    }

    #[test]
    fn put_token_request_has_the_fields_cbs_needs() {
        let p = params();
        assert_eq!(p.audience, "sb://localhost/shoal/consumergroups/$Default");
        assert!(p.token.starts_with("SharedAccessSignature sr=sb%3A%2F%2Flocalhost%2Fshoal%2Fconsumergroups%2F%24Default&sig="));
        assert!(p.token.ends_with("&se=1700000000&skn=iothubowner"));
        let mut message = Vec::new();
        encode_put_token(&p, &mut message);
        let sections = Sections::split(&message).expect("splits");
        let props = sections.decode_application_properties().expect("decodes");
        let get = |key: &str| props.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(
            get("operation"),
            Some(SimpleValue::String("put-token".into()))
        );
        assert_eq!(
            get("type"),
            Some(SimpleValue::String(
                "servicebus.windows.net:sastoken".into()
            ))
        );
        assert_eq!(get("name"), Some(SimpleValue::String(p.audience.clone())));
        assert!(matches!(get("expiration"), Some(SimpleValue::Timestamp(_))));
        assert_eq!(
            sections.value_body().expect("decodes"),
            Some(serde_amqp::Value::String(p.token.clone()))
        );
    }

    #[test]
    fn put_token_response_status_and_correlation() {
        use dataplane_amqp::message::section;
        let mut message = Vec::new();
        codec::put_descriptor(&mut message, section::PROPERTIES);
        let list = Compound::begin_list(&mut message);
        for _ in 0..5 {
            codec::put_null(&mut message);
        }
        codec::put_ulong(&mut message, PUT_TOKEN_MESSAGE_ID);
        list.end(&mut message, 6);
        codec::put_descriptor(&mut message, section::APPLICATION_PROPERTIES);
        let map = Compound::begin_map(&mut message);
        codec::put_str(&mut message, "status-code");
        codec::put_int(&mut message, 401);
        codec::put_str(&mut message, "status-description");
        codec::put_str(&mut message, "bad signature");
        map.end(&mut message, 4);
        let status = parse_put_token_response(&message).expect("parses");
        assert_eq!(
            status,
            PutTokenStatus {
                code: 401,
                description: "bad signature".into(),
                correlates: true
            }
        );
        assert!(parse_put_token_response(&[]).is_err(), "no status code");
    }

    #[test]
    fn data_body_finds_the_payload_without_copying() {
        let mut message = Vec::new();
        dataplane_amqp::event::encode_event(
            &dataplane_amqp::event::EventFields {
                sequence_number: 1,
                offset: "0",
                enqueued_time_ms: 1,
                partition_key: None,
                iothub: dataplane_amqp::event::IotHubAnnotations::default(),
                extra_annotations: &[],
                properties: dataplane_amqp::event::EventProperties::default(),
                application_properties: &[("k", "v")],
                body: b"hello",
                runtime_metrics: None,
            },
            &mut message,
        );
        assert_eq!(data_body(&message), Some(&b"hello"[..]));
        assert_eq!(data_body(&message[..3]), None);
    }

    fn pump(client: &mut ReceiverClient, server: &mut Connection, now: Instant) {
        for _ in 0..8 {
            let mut bytes = Vec::new();
            client.poll_transmit(&mut bytes);
            if !bytes.is_empty() {
                server.handle_bytes(&bytes, now);
            }
            let mut back = Vec::new();
            server.poll_transmit(now, &mut back);
            if !back.is_empty() {
                client.handle_bytes(&back);
            }
        }
    }

    /// The whole exchange against the server state machine of `dataplane-amqp`: SASL,
    /// open, `$cbs` put-token, the partition attach with its selector, and events.
    ///
    /// Expectation: the server sees ANONYMOUS, a put-token for the consumer-group audience
    /// and a receiver attach starting at `@latest`; every event it sends comes out of the
    /// client as a message whose data section is the event body, and credit keeps flowing
    /// past the initial window.
    #[test]
    fn full_exchange_against_the_server_state_machine() {
        let now = Instant::now();
        let mut server = Connection::new(Config::default(), now);
        let mut client = ReceiverClient::new(params());
        let mut link = None;
        let mut bodies = Vec::new();
        let mut sent = 0;
        for _round in 0..200 {
            pump(&mut client, &mut server, now);
            while let Some(event) = server.poll_event() {
                match event {
                    Event::SaslInit(init) => {
                        assert_eq!(init.mechanism.as_str(), "ANONYMOUS");
                        server.complete_sasl(ServerSaslOutcome::Ok).expect("sasl");
                    }
                    Event::ManagementRequest(request) => {
                        let put = dataplane_amqp::management::PutToken::from_request(&request)
                            .expect("a put-token");
                        assert_eq!(put.audience, "sb://localhost/shoal/consumergroups/$Default");
                        server
                            .respond(request.request, 200, "OK", None)
                            .expect("respond");
                    }
                    Event::ReceiverAttach(attach) => {
                        assert_eq!(
                            attach.start_position().expect("parses"),
                            Some(dataplane_amqp::address::StartPosition::Latest)
                        );
                        server.accept_link(attach.link).expect("accept");
                        link = Some(attach.link);
                    }
                    Event::Closed(reason) => panic!("server closed: {reason:?}"),
                    _ => {}
                }
            }
            if let Some(link) = link {
                let credit = server.link_credit(link).expect("credit");
                for _ in 0..credit.min(7) {
                    if sent == 25 {
                        break;
                    }
                    let body = format!("event-{sent}");
                    let mut message = Vec::new();
                    dataplane_amqp::event::encode_event(
                        &dataplane_amqp::event::EventFields {
                            sequence_number: sent,
                            offset: "0",
                            enqueued_time_ms: 0,
                            partition_key: None,
                            iothub: dataplane_amqp::event::IotHubAnnotations::default(),
                            extra_annotations: &[],
                            properties: dataplane_amqp::event::EventProperties::default(),
                            application_properties: &[],
                            body: body.as_bytes(),
                            runtime_metrics: None,
                        },
                        &mut message,
                    );
                    server.send_message(link, &message, true).expect("send");
                    sent += 1;
                }
            }
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Message(message) => {
                        bodies.push(
                            String::from_utf8(data_body(&message).expect("data").to_vec())
                                .expect("utf8"),
                        );
                    }
                    ClientEvent::Failed(why) => panic!("client failed: {why}"),
                    ClientEvent::Authorized | ClientEvent::Attached => {}
                }
            }
            if bodies.len() == 25 {
                break;
            }
        }
        assert_eq!(bodies.len(), 25, "credit of 10 was replenished");
        assert_eq!(bodies[0], "event-0");
        assert_eq!(bodies[24], "event-24");
        assert_eq!(client.received, 25);
    }

    #[test]
    fn a_refused_token_fails_with_the_servers_reason() {
        let now = Instant::now();
        let mut server = Connection::new(Config::default(), now);
        let mut client = ReceiverClient::new(params());
        let mut failure = None;
        for _ in 0..20 {
            pump(&mut client, &mut server, now);
            while let Some(event) = server.poll_event() {
                match event {
                    Event::SaslInit(_) => {
                        server.complete_sasl(ServerSaslOutcome::Ok).expect("sasl");
                    }
                    Event::ManagementRequest(request) => {
                        server
                            .respond(request.request, 401, "signature mismatch", None)
                            .expect("respond");
                    }
                    _ => {}
                }
            }
            if let Some(ClientEvent::Failed(why)) = client.poll_event() {
                failure = Some(why);
                break;
            }
        }
        let why = failure.expect("the client reports the refusal");
        assert!(
            why.contains("401") && why.contains("signature mismatch"),
            "{why}"
        );
    }
}
