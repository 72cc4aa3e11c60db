//! A scripted client for driving a server `Connection` in tests: it writes client frames
//! with the crate's writer and parses every byte the server sends back, checking the
//! framing invariants on the way (doff 2, descriptor 0x53, well-formed values).

#![allow(dead_code)]
// Test-only: a few large variants are fine in a Vec of received frames.
#![allow(clippy::large_enum_variant)]

use std::time::{Duration, Instant};

use dataplane_amqp::codec::{self, Compound};
use dataplane_amqp::frame::{self, AMQP_HEADER, SASL_HEADER};
use dataplane_amqp::performative::{
    self, AttachFields, BeginFields, CloseFields, DetachFields, Encode, FlowFields, LinkFlowFields,
    OpenFields, Role, SaslFrame, TransferFields, write_frame,
};
use dataplane_amqp::sasl::SaslOutcome;
use dataplane_amqp::{Config, Connection, Event, LinkId};
use fe2o3_amqp_types::performatives::Performative;

/// What the server sent, one item per header or frame.
#[derive(Debug)]
pub enum Received {
    Header([u8; 8]),
    Sasl(SaslFrame),
    Heartbeat,
    Amqp {
        channel: u16,
        performative: Performative,
        /// The encoded performative (descriptor and list), for byte-level checks.
        raw: Vec<u8>,
        payload: Vec<u8>,
    },
}

impl Received {
    pub fn performative(&self) -> Option<&Performative> {
        match self {
            Self::Amqp { performative, .. } => Some(performative),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Header(_) => "header",
            Self::Sasl(_) => "sasl",
            Self::Heartbeat => "heartbeat",
            Self::Amqp { performative, .. } => performative::name(performative),
        }
    }
}

/// Splits server output into headers and frames. Panics on anything malformed: the
/// server must never write it.
pub fn parse_output(mut bytes: &[u8]) -> Vec<Received> {
    let mut received = Vec::new();
    while !bytes.is_empty() {
        if bytes.starts_with(b"AMQP") {
            received.push(Received::Header(bytes[..8].try_into().expect("8 bytes")));
            bytes = &bytes[8..];
            continue;
        }
        let (frame, size) = frame::split_frame(bytes, u32::MAX)
            .expect("server frames are well-formed")
            .expect("server frames are complete");
        assert_eq!(frame.header.doff, 2, "doff must be 2");
        if frame.header.frame_type == frame::TYPE_SASL {
            received.push(Received::Sasl(
                performative::decode_sasl(frame.body).expect("decodes"),
            ));
        } else if frame.body.is_empty() {
            received.push(Received::Heartbeat);
        } else {
            assert_eq!(
                &frame.body[..2],
                &[0x00, 0x53],
                "descriptor must be smallulong"
            );
            let (performative, len) = performative::decode(frame.body).expect("decodes");
            received.push(Received::Amqp {
                channel: frame.header.channel,
                performative,
                raw: frame.body[..len].to_vec(),
                payload: frame.body[len..].to_vec(),
            });
        }
        bytes = &bytes[size..];
    }
    received
}

/// The number of fields in an encoded performative's list.
pub fn field_count(raw: &[u8]) -> usize {
    codec::list_fields(&raw[3..])
        .expect("valid")
        .expect("a list")
        .len()
}

/// The server under test plus a clock.
pub struct Peer {
    pub conn: Connection,
    pub now: Instant,
    pub start: Instant,
}

impl Peer {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        let now = Instant::now();
        Self {
            conn: Connection::new(config, now),
            now,
            start: now,
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.conn.handle_bytes(bytes, self.now);
    }

    pub fn recv_bytes(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.conn.poll_transmit(self.now, &mut out);
        out
    }

    pub fn recv(&mut self) -> Vec<Received> {
        parse_output(&self.recv_bytes())
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// SASL ANONYMOUS, open (with `idle_timeout_ms`, max-frame-size 1 MiB) and a begin on
    /// channel 1 with an incoming window of `window`. Checks and drops the replies.
    pub fn open_with(&mut self, idle_timeout_ms: Option<u32>, max_frame_size: u32, window: u32) {
        let mut bytes = SASL_HEADER.to_vec();
        performative::write_sasl_init(&mut bytes, "ANONYMOUS", Some(&[]), Some("localhost"));
        self.send(&bytes);
        assert!(matches!(self.events()[..], [Event::SaslInit(_)]));
        self.conn.complete_sasl(SaslOutcome::Ok).expect("pending");
        let mut bytes = AMQP_HEADER.to_vec();
        bytes.extend(open_frame(idle_timeout_ms, max_frame_size));
        bytes.extend(begin_frame(1, window));
        self.send(&bytes);
        let names: Vec<&str> = self.recv().iter().map(Received::name).collect();
        assert_eq!(names, ["header", "sasl", "sasl", "header", "open", "begin"]);
        assert!(matches!(self.events()[..], [Event::Opened { .. }]));
    }

    pub fn open(&mut self) {
        self.open_with(None, 1024 * 1024, 65_536);
    }

    /// Attaches a partition receiver (client role receiver) and returns the event.
    pub fn attach_receiver(
        &mut self,
        handle: u32,
        address: &str,
        selector: Option<&str>,
    ) -> LinkId {
        self.send(&attach_frame(
            1,
            handle,
            Role::Receiver,
            address,
            selector,
            &[],
            None,
        ));
        match &self.events()[..] {
            [Event::ReceiverAttach(attach)] => attach.link,
            other => panic!("expected a receiver attach, got {other:?}"),
        }
    }

    /// Attaches and accepts a receiver, grants `credit`, returns the link.
    pub fn receiver_with_credit(&mut self, handle: u32, credit: u32) -> LinkId {
        let link = self.attach_receiver(
            handle,
            "amqps://h/hub/ConsumerGroups/$Default/Partitions/0",
            None,
        );
        self.conn.accept_link(link).expect("pending");
        self.recv();
        self.send(&flow_frame(1, handle, Some(0), credit, 0));
        self.events();
        link
    }
}

pub fn frame_bytes(channel: u16, performative: &impl Encode) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, channel, performative);
    out
}

pub fn open_frame(idle_timeout_ms: Option<u32>, max_frame_size: u32) -> Vec<u8> {
    frame_bytes(
        0,
        &OpenFields {
            container_id: "client",
            hostname: Some("localhost"),
            max_frame_size,
            channel_max: 65_535,
            idle_timeout_ms,
            offered_capabilities: None,
            properties: None,
        },
    )
}

pub fn begin_frame(channel: u16, incoming_window: u32) -> Vec<u8> {
    frame_bytes(
        channel,
        &BeginFields {
            remote_channel: None,
            next_outgoing_id: 0,
            incoming_window,
            outgoing_window: 65_536,
            handle_max: u32::MAX,
        },
    )
}

/// An encoded source or target terminus with an address, and optionally a selector filter
/// under the symbolic descriptor.
pub fn terminus(descriptor: u8, address: &str, selector: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_descriptor(&mut out, descriptor);
    let list = Compound::begin_list(&mut out);
    codec::put_str(&mut out, address);
    let mut count = 1;
    if let Some(selector) = selector {
        // durable, expiry-policy, timeout, dynamic, dynamic-node-properties, distribution-mode
        out.extend_from_slice(&[0x40; 6]);
        let map = Compound::begin_map(&mut out);
        codec::put_sym(&mut out, "apache.org:selector-filter:string");
        out.push(0x00);
        codec::put_sym(&mut out, "apache.org:selector-filter:string");
        codec::put_str(&mut out, selector);
        map.end(&mut out, 2);
        count = 8;
    }
    list.end(&mut out, count);
    out
}

/// An attach from the client. `role` is the client's.
pub fn attach_frame(
    channel: u16,
    handle: u32,
    role: Role,
    address: &str,
    selector: Option<&str>,
    desired_capabilities: &[&str],
    epoch: Option<i64>,
) -> Vec<u8> {
    let (source, target) = match role {
        Role::Receiver => (
            terminus(0x28, address, selector),
            terminus(0x29, &format!("receiver-link-{handle}"), None),
        ),
        Role::Sender => (
            terminus(0x28, &format!("sender-{handle}"), None),
            terminus(0x29, address, None),
        ),
    };
    let mut capabilities = Vec::new();
    if !desired_capabilities.is_empty() {
        codec::put_sym_array(&mut capabilities, desired_capabilities);
    }
    let mut properties = Vec::new();
    let map = Compound::begin_map(&mut properties);
    codec::put_sym(&mut properties, "com.microsoft:timeout");
    codec::put_long(&mut properties, 0);
    let mut count = 2;
    if let Some(epoch) = epoch {
        codec::put_sym(&mut properties, "com.microsoft:epoch");
        codec::put_long(&mut properties, epoch);
        count = 4;
    }
    map.end(&mut properties, count);
    let name = format!("link-{handle}");
    frame_bytes(
        channel,
        &AttachFields {
            name: &name,
            handle,
            role,
            snd_settle_mode: 0,
            rcv_settle_mode: 0,
            source: Some(&source),
            target: Some(&target),
            initial_delivery_count: (role == Role::Sender).then_some(0),
            max_message_size: Some(1024 * 1024),
            offered_capabilities: None,
            desired_capabilities: (!capabilities.is_empty()).then_some(&capabilities[..]),
            properties: Some(&properties),
        },
    )
}

pub fn flow_frame(
    channel: u16,
    handle: u32,
    delivery_count: Option<u32>,
    link_credit: u32,
    next_incoming_id: u32,
) -> Vec<u8> {
    frame_bytes(
        channel,
        &FlowFields {
            next_incoming_id: Some(next_incoming_id),
            incoming_window: 65_536,
            next_outgoing_id: 0,
            outgoing_window: 65_536,
            link: Some(LinkFlowFields {
                handle,
                delivery_count,
                link_credit: Some(link_credit),
                available: None,
                drain: false,
            }),
            echo: false,
        },
    )
}

pub fn session_flow(channel: u16, next_incoming_id: u32, incoming_window: u32) -> Vec<u8> {
    frame_bytes(
        channel,
        &FlowFields {
            next_incoming_id: Some(next_incoming_id),
            incoming_window,
            next_outgoing_id: 0,
            outgoing_window: 65_536,
            link: None,
            echo: false,
        },
    )
}

pub fn transfer_frame(
    channel: u16,
    handle: u32,
    delivery_id: Option<u32>,
    settled: bool,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let tag = delivery_id.unwrap_or(0).to_be_bytes();
    let mut out = Vec::new();
    let start = frame::begin_frame(&mut out, frame::TYPE_AMQP, channel);
    TransferFields {
        handle,
        delivery_id,
        delivery_tag: delivery_id.map(|_| &tag[..]),
        message_format: Some(0),
        settled: Some(settled),
        more,
        aborted: false,
    }
    .encode(&mut out);
    out.extend_from_slice(payload);
    frame::end_frame(&mut out, start);
    out
}

pub fn detach_frame(channel: u16, handle: u32) -> Vec<u8> {
    frame_bytes(
        channel,
        &DetachFields {
            handle,
            closed: true,
            error: None,
        },
    )
}

pub fn close_frame() -> Vec<u8> {
    frame_bytes(0, &CloseFields { error: None })
}

/// A management request: properties with the given encoded message-id, string application
/// properties, and an optional string amqp-value body.
pub fn request_message(
    message_id: &[u8],
    properties: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::new();
    codec::put_descriptor(&mut out, 0x73);
    let list = Compound::begin_list(&mut out);
    out.extend_from_slice(message_id);
    list.end(&mut out, 1);
    codec::put_descriptor(&mut out, 0x74);
    let map = Compound::begin_map(&mut out);
    for (key, value) in properties {
        codec::put_str(&mut out, key);
        codec::put_str(&mut out, value);
    }
    map.end(&mut out, properties.len() * 2);
    if let Some(body) = body {
        codec::put_descriptor(&mut out, 0x77);
        codec::put_str(&mut out, body);
    }
    out
}

/// The conditions in every close/end/detach error among `received`.
pub fn error_conditions(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .filter_map(|r| {
            let error = match r.performative()? {
                Performative::Close(c) => c.error.clone()?,
                Performative::End(e) => e.error.clone()?,
                Performative::Detach(d) => d.error.clone()?,
                _ => return None,
            };
            match serde_amqp::to_value(&error.condition).ok()? {
                serde_amqp::Value::Symbol(symbol) => Some(symbol.0),
                _ => None,
            }
        })
        .collect()
}
