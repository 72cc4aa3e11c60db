//! Performatives: decoded with fe2o3-amqp-types, written by hand with every field present.
//!
//! pyamqp indexes performative fields by position and reads the constructor at a fixed
//! offset, so a performative we write always looks like this:
//!
//! ```text
//! ┌────┬────┬──────┬──────────────────────────┬──────────────────────────────────────┐
//! │ 00 │ 53 │ code │ c0 size count | d0 size32 count32 │ field 0 … field count-1 (null = 40) │
//! └────┴────┴──────┴──────────────────────────┴──────────────────────────────────────┘
//! ```
//!
//! | performative | code | fields written |
//! |---|---|---|
//! | open | 0x10 | 10 |
//! | begin | 0x11 | 8 |
//! | attach | 0x12 | 14 |
//! | flow | 0x13 | 11 |
//! | transfer | 0x14 | 11 (pyamqp appends the payload as element 11) |
//! | disposition | 0x15 | 6 |
//! | detach | 0x16 | 3 |
//! | end | 0x17 | 1 (`c0 02 01 40` without an error, never list0) |
//! | close | 0x18 | 1 (likewise) |
//!
//! Complex fields we only echo (source, target, capabilities, properties) are carried as
//! already-encoded bytes ([`Raw`]), so an echo is byte-exact and writing cannot fail.

use fe2o3_amqp_types::performatives::Performative;
use fe2o3_amqp_types::sasl::{SaslChallenge, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse};

use crate::codec::{self, Compound, code};
use crate::error::{Condition, FrameError};
use crate::frame;

/// An encoded AMQP value, carried without interpretation.
pub type Raw<'a> = &'a [u8];

/// Descriptor codes of the performatives, SASL frames and the types we write.
pub mod descriptor {
    /// open.
    pub const OPEN: u8 = 0x10;
    /// begin.
    pub const BEGIN: u8 = 0x11;
    /// attach.
    pub const ATTACH: u8 = 0x12;
    /// flow.
    pub const FLOW: u8 = 0x13;
    /// transfer.
    pub const TRANSFER: u8 = 0x14;
    /// disposition.
    pub const DISPOSITION: u8 = 0x15;
    /// detach.
    pub const DETACH: u8 = 0x16;
    /// end.
    pub const END: u8 = 0x17;
    /// close.
    pub const CLOSE: u8 = 0x18;
    /// error.
    pub const ERROR: u8 = 0x1d;
    /// received (delivery state).
    pub const RECEIVED: u8 = 0x23;
    /// accepted outcome.
    pub const ACCEPTED: u8 = 0x24;
    /// rejected outcome.
    pub const REJECTED: u8 = 0x25;
    /// released outcome.
    pub const RELEASED: u8 = 0x26;
    /// modified outcome.
    pub const MODIFIED: u8 = 0x27;
    /// source terminus.
    pub const SOURCE: u8 = 0x28;
    /// target terminus.
    pub const TARGET: u8 = 0x29;
    /// sasl-mechanisms.
    pub const SASL_MECHANISMS: u8 = 0x40;
    /// sasl-init.
    pub const SASL_INIT: u8 = 0x41;
    /// sasl-challenge.
    pub const SASL_CHALLENGE: u8 = 0x42;
    /// sasl-response.
    pub const SASL_RESPONSE: u8 = 0x43;
    /// sasl-outcome.
    pub const SASL_OUTCOME: u8 = 0x44;
}

/// The name of a decoded performative, for errors and logs.
pub fn name(performative: &Performative) -> &'static str {
    match performative {
        Performative::Open(_) => "open",
        Performative::Begin(_) => "begin",
        Performative::Attach(_) => "attach",
        Performative::Flow(_) => "flow",
        Performative::Transfer(_) => "transfer",
        Performative::Disposition(_) => "disposition",
        Performative::Detach(_) => "detach",
        Performative::End(_) => "end",
        Performative::Close(_) => "close",
    }
}

/// Decodes the performative at the start of an AMQP frame body. Returns it with the length
/// of its encoding; the rest of the body is the transfer payload.
pub fn decode(body: &[u8]) -> Result<(Performative, usize), FrameError> {
    let len = codec::value_len(body).map_err(|e| FrameError::Decode { detail: e.detail() })?;
    if body[0] != code::DESCRIBED {
        return Err(FrameError::Decode {
            detail: "performative is not a described list",
        });
    }
    let performative =
        serde_amqp::from_slice::<Performative>(&body[..len]).map_err(|_| FrameError::Decode {
            detail: "not a known performative",
        })?;
    Ok((performative, len))
}

/// A decoded SASL frame body.
#[derive(Debug, Clone)]
pub enum SaslFrame {
    /// sasl-mechanisms (server to client).
    Mechanisms(SaslMechanisms),
    /// sasl-init (client to server).
    Init(SaslInit),
    /// sasl-challenge (server to client).
    Challenge(SaslChallenge),
    /// sasl-response (client to server).
    Response(SaslResponse),
    /// sasl-outcome (server to client).
    Outcome(SaslOutcome),
}

/// Decodes a SASL frame body.
pub fn decode_sasl(body: &[u8]) -> Result<SaslFrame, FrameError> {
    fn de<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, FrameError> {
        serde_amqp::from_slice(bytes).map_err(|_| FrameError::Decode {
            detail: "bad SASL frame",
        })
    }
    let len = codec::value_len(body).map_err(|e| FrameError::Decode { detail: e.detail() })?;
    let bytes = &body[..len];
    let Some((code, _)) = codec::numeric_descriptor(bytes) else {
        return Err(FrameError::Decode {
            detail: "SASL frame without a numeric descriptor",
        });
    };
    match code {
        0x40 => de(bytes).map(SaslFrame::Mechanisms),
        0x41 => de(bytes).map(SaslFrame::Init),
        0x42 => de(bytes).map(SaslFrame::Challenge),
        0x43 => de(bytes).map(SaslFrame::Response),
        0x44 => de(bytes).map(SaslFrame::Outcome),
        _ => Err(FrameError::Decode {
            detail: "unknown SASL frame",
        }),
    }
}

/// Which end of a link a peer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends transfers (false on the wire).
    Sender,
    /// Receives transfers (true on the wire).
    Receiver,
}

impl Role {
    fn as_bool(self) -> bool {
        matches!(self, Self::Receiver)
    }
}

/// An error to carry in close, end, detach or a rejected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// The condition symbol.
    pub condition: &'a str,
    /// A human-readable description.
    pub description: Option<&'a str>,
}

/// The longest error description we send, in bytes. With it, a close, end or detach always
/// fits the smallest max-frame-size a peer may declare (512).
pub const DESCRIPTION_BYTES_MAX: usize = 256;

impl<'a> ErrorFields<'a> {
    /// An error with a standard condition. The description is cut at
    /// [`DESCRIPTION_BYTES_MAX`] (on a character boundary).
    pub fn new(condition: Condition, description: &'a str) -> Self {
        let mut end = description.len().min(DESCRIPTION_BYTES_MAX);
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            condition: condition.as_str(),
            description: Some(&description[..end]),
        }
    }
}

fn put_error(buf: &mut Vec<u8>, error: Option<&ErrorFields<'_>>) {
    let Some(error) = error else {
        codec::put_null(buf);
        return;
    };
    codec::put_descriptor(buf, descriptor::ERROR);
    let list = Compound::begin_list(buf);
    codec::put_sym(buf, error.condition);
    match error.description {
        Some(description) => codec::put_str(buf, description),
        None => codec::put_null(buf),
    }
    codec::put_null(buf);
    list.end(buf, 3);
}

fn put_opt_uint(buf: &mut Vec<u8>, value: Option<u32>) {
    match value {
        Some(value) => codec::put_uint(buf, value),
        None => codec::put_null(buf),
    }
}

fn put_opt_str(buf: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => codec::put_str(buf, value),
        None => codec::put_null(buf),
    }
}

/// A delivery outcome we put in a disposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The message was processed.
    Accepted,
    /// The message is invalid and will not be processed; the condition says why.
    Rejected {
        /// Why.
        condition: Condition,
        /// Details for humans.
        description: Option<String>,
    },
    /// Not processed; the sender may deliver it elsewhere or again.
    Released,
    /// Not processed, with annotations for the sender.
    Modified {
        /// Count the attempt as a failed delivery.
        delivery_failed: bool,
        /// Do not redeliver to this receiver.
        undeliverable_here: bool,
    },
}

/// Writes a delivery outcome. Outcomes always use their numeric descriptor and a list8, the
/// only shape pyamqp turns into an outcome.
pub fn put_outcome(buf: &mut Vec<u8>, outcome: &Outcome) {
    match outcome {
        Outcome::Accepted => {
            codec::put_descriptor(buf, descriptor::ACCEPTED);
            buf.extend_from_slice(&[code::LIST8, 1, 0]);
        }
        Outcome::Rejected {
            condition,
            description,
        } => {
            codec::put_descriptor(buf, descriptor::REJECTED);
            let list = Compound::begin_list(buf);
            let error = ErrorFields {
                condition: condition.as_str(),
                description: description.as_deref(),
            };
            put_error(buf, Some(&error));
            list.end(buf, 1);
        }
        Outcome::Released => {
            codec::put_descriptor(buf, descriptor::RELEASED);
            buf.extend_from_slice(&[code::LIST8, 1, 0]);
        }
        Outcome::Modified {
            delivery_failed,
            undeliverable_here,
        } => {
            codec::put_descriptor(buf, descriptor::MODIFIED);
            let list = Compound::begin_list(buf);
            codec::put_bool(buf, *delivery_failed);
            codec::put_bool(buf, *undeliverable_here);
            codec::put_null(buf);
            list.end(buf, 3);
        }
    }
}

/// Something that encodes as a performative body.
pub trait Encode {
    /// Appends the described list.
    fn encode(&self, buf: &mut Vec<u8>);
}

/// Writes a whole AMQP frame holding `performative` on `channel`; returns the frame's length.
pub fn write_frame(buf: &mut Vec<u8>, channel: u16, performative: &impl Encode) -> usize {
    let start = frame::begin_frame(buf, frame::TYPE_AMQP, channel);
    performative.encode(buf);
    frame::end_frame(buf, start)
}

/// The fields of an `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFields<'a> {
    /// Our container id.
    pub container_id: &'a str,
    /// The virtual host asked for (clients) or null (servers).
    pub hostname: Option<&'a str>,
    /// The largest frame we accept. Always written: pyamqp fails on null.
    pub max_frame_size: u32,
    /// The highest channel number we accept.
    pub channel_max: u16,
    /// Our idle time-out: the peer must send something at least this often.
    pub idle_timeout_ms: Option<u32>,
    /// Capabilities offered, as an encoded symbol array.
    pub offered_capabilities: Option<Raw<'a>>,
    /// Connection properties, as an encoded map.
    pub properties: Option<Raw<'a>>,
}

impl Encode for OpenFields<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::OPEN);
        let list = Compound::begin_list(buf);
        codec::put_str(buf, self.container_id);
        put_opt_str(buf, self.hostname);
        codec::put_uint(buf, self.max_frame_size);
        codec::put_ushort(buf, self.channel_max);
        put_opt_uint(buf, self.idle_timeout_ms);
        codec::put_null(buf); // outgoing-locales
        codec::put_null(buf); // incoming-locales
        codec::put_raw(buf, self.offered_capabilities);
        codec::put_null(buf); // desired-capabilities
        codec::put_raw(buf, self.properties);
        list.end(buf, 10);
    }
}

/// The fields of a `begin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginFields {
    /// The peer's channel when answering its begin.
    pub remote_channel: Option<u16>,
    /// The id of our next transfer frame.
    pub next_outgoing_id: u32,
    /// How many transfer frames we accept before the next flow. Always > 0.
    pub incoming_window: u32,
    /// How many transfer frames we may send.
    pub outgoing_window: u32,
    /// The highest link handle we accept. Always written.
    pub handle_max: u32,
}

impl Encode for BeginFields {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::BEGIN);
        let list = Compound::begin_list(buf);
        match self.remote_channel {
            Some(channel) => codec::put_ushort(buf, channel),
            None => codec::put_null(buf),
        }
        codec::put_uint(buf, self.next_outgoing_id);
        codec::put_uint(buf, self.incoming_window);
        codec::put_uint(buf, self.outgoing_window);
        codec::put_uint(buf, self.handle_max);
        codec::put_null(buf); // offered-capabilities
        codec::put_null(buf); // desired-capabilities
        codec::put_null(buf); // properties
        list.end(buf, 8);
    }
}

/// The fields of an `attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachFields<'a> {
    /// The link name; a reply echoes the peer's.
    pub name: &'a str,
    /// Our handle for the link.
    pub handle: u32,
    /// Our role.
    pub role: Role,
    /// 0 unsettled, 1 settled, 2 mixed.
    pub snd_settle_mode: u8,
    /// 0 first, 1 second.
    pub rcv_settle_mode: u8,
    /// The encoded source terminus.
    pub source: Option<Raw<'a>>,
    /// The encoded target terminus.
    pub target: Option<Raw<'a>>,
    /// Written when we are the sender; pyamqp hangs without it.
    pub initial_delivery_count: Option<u32>,
    /// The largest message we accept on this link.
    pub max_message_size: Option<u64>,
    /// Encoded symbol array.
    pub offered_capabilities: Option<Raw<'a>>,
    /// Encoded symbol array.
    pub desired_capabilities: Option<Raw<'a>>,
    /// Encoded map.
    pub properties: Option<Raw<'a>>,
}

impl Encode for AttachFields<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::ATTACH);
        let list = Compound::begin_list(buf);
        codec::put_str(buf, self.name);
        codec::put_uint(buf, self.handle);
        codec::put_bool(buf, self.role.as_bool());
        codec::put_ubyte(buf, self.snd_settle_mode);
        codec::put_ubyte(buf, self.rcv_settle_mode);
        codec::put_raw(buf, self.source);
        codec::put_raw(buf, self.target);
        codec::put_null(buf); // unsettled
        codec::put_bool(buf, false); // incomplete-unsettled
        put_opt_uint(buf, self.initial_delivery_count);
        match self.max_message_size {
            Some(size) => codec::put_ulong(buf, size),
            None => codec::put_null(buf),
        }
        codec::put_raw(buf, self.offered_capabilities);
        codec::put_raw(buf, self.desired_capabilities);
        codec::put_raw(buf, self.properties);
        list.end(buf, 14);
    }
}

/// The link part of a `flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFlowFields {
    /// Our handle.
    pub handle: u32,
    /// The link's delivery-count.
    pub delivery_count: Option<u32>,
    /// The credit (receiver) or the receiver's credit as we see it (sender).
    pub link_credit: Option<u32>,
    /// Messages available at the sender.
    pub available: Option<u32>,
    /// Drain mode.
    pub drain: bool,
}

/// The fields of a `flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowFields {
    /// The peer's next-outgoing-id as we expect it; null before their begin arrived.
    pub next_incoming_id: Option<u32>,
    /// Our incoming window.
    pub incoming_window: u32,
    /// Our next-outgoing-id.
    pub next_outgoing_id: u32,
    /// Our outgoing window.
    pub outgoing_window: u32,
    /// The link state, when the flow is about one link.
    pub link: Option<LinkFlowFields>,
    /// Ask the peer to answer with its own flow.
    pub echo: bool,
}

impl Encode for FlowFields {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::FLOW);
        let list = Compound::begin_list(buf);
        put_opt_uint(buf, self.next_incoming_id);
        codec::put_uint(buf, self.incoming_window);
        codec::put_uint(buf, self.next_outgoing_id);
        codec::put_uint(buf, self.outgoing_window);
        match &self.link {
            Some(link) => {
                codec::put_uint(buf, link.handle);
                put_opt_uint(buf, link.delivery_count);
                put_opt_uint(buf, link.link_credit);
                put_opt_uint(buf, link.available);
                codec::put_bool(buf, link.drain);
            }
            None => {
                // handle, delivery-count, link-credit, available, then drain = false.
                buf.extend_from_slice(&[code::NULL; 4]);
                codec::put_bool(buf, false);
            }
        }
        codec::put_bool(buf, self.echo);
        codec::put_null(buf); // properties
        list.end(buf, 11);
    }
}

/// The fields of a `transfer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferFields<'a> {
    /// Our handle.
    pub handle: u32,
    /// The session-scoped delivery id.
    pub delivery_id: Option<u32>,
    /// The link-scoped delivery tag.
    pub delivery_tag: Option<&'a [u8]>,
    /// 0 for AMQP messages.
    pub message_format: Option<u32>,
    /// Pre-settled.
    pub settled: Option<bool>,
    /// More frames of this delivery follow.
    pub more: bool,
    /// The delivery was aborted; the receiver discards what it has.
    pub aborted: bool,
}

impl Encode for TransferFields<'_> {
    #[inline]
    fn encode(&self, buf: &mut Vec<u8>) {
        // The 11 fields are at most 5+5+(2+255)+5+1+1+1+1+1+1+1 bytes, so list8 unless the tag
        // is long; write the list header by hand on the hot path.
        let tag_len = self.delivery_tag.map_or(0, <[u8]>::len);
        if tag_len > 200 {
            return self.encode_slow(buf);
        }
        codec::put_descriptor(buf, descriptor::TRANSFER);
        let header_at = buf.len();
        buf.extend_from_slice(&[code::LIST8, 0, 11]);
        self.put_fields(buf);
        let size = buf.len() - header_at - 2;
        buf[header_at + 1] = size as u8;
    }
}

impl TransferFields<'_> {
    fn put_fields(&self, buf: &mut Vec<u8>) {
        codec::put_uint(buf, self.handle);
        put_opt_uint(buf, self.delivery_id);
        match self.delivery_tag {
            Some(tag) => codec::put_binary(buf, tag),
            None => codec::put_null(buf),
        }
        put_opt_uint(buf, self.message_format);
        match self.settled {
            Some(settled) => codec::put_bool(buf, settled),
            None => codec::put_null(buf),
        }
        codec::put_bool(buf, self.more);
        codec::put_null(buf); // rcv-settle-mode
        codec::put_null(buf); // state
        codec::put_bool(buf, false); // resume
        codec::put_bool(buf, self.aborted);
        codec::put_bool(buf, false); // batchable
    }

    fn encode_slow(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::TRANSFER);
        let list = Compound::begin_list(buf);
        self.put_fields(buf);
        list.end(buf, 11);
    }
}

/// The fields of a `disposition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionFields<'a> {
    /// Our role on the link(s) the deliveries belong to.
    pub role: Role,
    /// The first delivery id.
    pub first: u32,
    /// The last delivery id, inclusive.
    pub last: Option<u32>,
    /// Settle the deliveries.
    pub settled: bool,
    /// The outcome.
    pub state: Option<&'a Outcome>,
}

impl Encode for DispositionFields<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::DISPOSITION);
        let list = Compound::begin_list(buf);
        codec::put_bool(buf, self.role.as_bool());
        codec::put_uint(buf, self.first);
        put_opt_uint(buf, self.last);
        codec::put_bool(buf, self.settled);
        match self.state {
            Some(outcome) => put_outcome(buf, outcome),
            None => codec::put_null(buf),
        }
        codec::put_bool(buf, false); // batchable
        list.end(buf, 6);
    }
}

/// The fields of a `detach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachFields<'a> {
    /// Our handle.
    pub handle: u32,
    /// Close the link rather than only detach it.
    pub closed: bool,
    /// Why.
    pub error: Option<ErrorFields<'a>>,
}

impl Encode for DetachFields<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::DETACH);
        let list = Compound::begin_list(buf);
        codec::put_uint(buf, self.handle);
        codec::put_bool(buf, self.closed);
        put_error(buf, self.error.as_ref());
        list.end(buf, 3);
    }
}

/// The fields of an `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndFields<'a> {
    /// Why, if the session ends on an error.
    pub error: Option<ErrorFields<'a>>,
}

impl Encode for EndFields<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::END);
        let list = Compound::begin_list(buf);
        put_error(buf, self.error.as_ref());
        list.end(buf, 1);
    }
}

/// The fields of a `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFields<'a> {
    /// Why, if the connection ends on an error.
    pub error: Option<ErrorFields<'a>>,
}

impl Encode for CloseFields<'_> {
    fn encode(&self, buf: &mut Vec<u8>) {
        codec::put_descriptor(buf, descriptor::CLOSE);
        let list = Compound::begin_list(buf);
        put_error(buf, self.error.as_ref());
        list.end(buf, 1);
    }
}

/// Writes a SASL frame offering `mechanisms` (an array of symbols).
pub fn write_sasl_mechanisms(buf: &mut Vec<u8>, mechanisms: &[&str]) {
    let start = frame::begin_frame(buf, frame::TYPE_SASL, 0);
    codec::put_descriptor(buf, descriptor::SASL_MECHANISMS);
    let list = Compound::begin_list(buf);
    codec::put_sym_array(buf, mechanisms);
    list.end(buf, 1);
    frame::end_frame(buf, start);
}

/// Writes a SASL frame with the outcome `code` (0 ok, 1 auth, 2 sys, 3 sys-perm, 4 sys-temp).
pub fn write_sasl_outcome(buf: &mut Vec<u8>, code: u8) {
    let start = frame::begin_frame(buf, frame::TYPE_SASL, 0);
    codec::put_descriptor(buf, descriptor::SASL_OUTCOME);
    let list = Compound::begin_list(buf);
    codec::put_ubyte(buf, code);
    codec::put_null(buf); // additional-data
    list.end(buf, 2);
    frame::end_frame(buf, start);
}

/// Writes a SASL init (what a client sends); used by tests and tools.
pub fn write_sasl_init(
    buf: &mut Vec<u8>,
    mechanism: &str,
    initial_response: Option<&[u8]>,
    hostname: Option<&str>,
) {
    let start = frame::begin_frame(buf, frame::TYPE_SASL, 0);
    codec::put_descriptor(buf, descriptor::SASL_INIT);
    let list = Compound::begin_list(buf);
    codec::put_sym(buf, mechanism);
    match initial_response {
        Some(response) => codec::put_binary(buf, response),
        None => codec::put_null(buf),
    }
    put_opt_str(buf, hostname);
    list.end(buf, 3);
    frame::end_frame(buf, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number of fields in the list of a performative body written by `encode`.
    fn field_count(performative: &impl Encode) -> usize {
        let mut buf = Vec::new();
        performative.encode(&mut buf);
        assert_eq!(&buf[..2], &[0x00, 0x53], "descriptor must be smallulong");
        let fields = codec::list_fields(&buf[3..])
            .expect("valid")
            .expect("a list");
        assert!(
            matches!(buf[3], 0xc0 | 0xd0),
            "list8 or list32, never list0"
        );
        let (decoded, len) = decode(&buf).expect("fe2o3 decodes what we write");
        assert_eq!(len, buf.len(), "{}", name(&decoded));
        fields.len()
    }

    #[test]
    fn every_performative_is_written_with_all_fields() {
        let open = OpenFields {
            container_id: "shoal",
            hostname: None,
            max_frame_size: 65_536,
            channel_max: 255,
            idle_timeout_ms: Some(60_000),
            offered_capabilities: None,
            properties: None,
        };
        assert_eq!(field_count(&open), 10);
        let begin = BeginFields {
            remote_channel: Some(1),
            next_outgoing_id: 0,
            incoming_window: 5000,
            outgoing_window: u32::MAX,
            handle_max: 63,
        };
        assert_eq!(field_count(&begin), 8);
        let source = [
            0x00, 0x53, 0x28, 0xc0, 0x06, 0x01, 0xa1, 0x03, b'$', b'c', b'b',
        ];
        let target = [
            0x00, 0x53, 0x29, 0xc0, 0x06, 0x01, 0xa1, 0x03, b'$', b'c', b'b',
        ];
        let attach = AttachFields {
            name: "link",
            handle: 0,
            role: Role::Sender,
            snd_settle_mode: 1,
            rcv_settle_mode: 0,
            source: Some(&source),
            target: Some(&target),
            initial_delivery_count: Some(0),
            max_message_size: Some(1 << 20),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        assert_eq!(field_count(&attach), 14);
        let flow = FlowFields {
            next_incoming_id: Some(0),
            incoming_window: 5000,
            next_outgoing_id: 0,
            outgoing_window: 5000,
            link: Some(LinkFlowFields {
                handle: 1,
                delivery_count: Some(0),
                link_credit: Some(100),
                available: None,
                drain: false,
            }),
            echo: false,
        };
        assert_eq!(field_count(&flow), 11);
        assert_eq!(field_count(&FlowFields { link: None, ..flow }), 11);
        let transfer = TransferFields {
            handle: 1,
            delivery_id: Some(7),
            delivery_tag: Some(&[0, 0, 0, 7]),
            message_format: Some(0),
            settled: Some(true),
            more: false,
            aborted: false,
        };
        assert_eq!(field_count(&transfer), 11);
        let long_tag = [9; 255];
        assert_eq!(
            field_count(&TransferFields {
                delivery_tag: Some(&long_tag),
                ..transfer
            }),
            11
        );
        let accepted = Outcome::Accepted;
        let disposition = DispositionFields {
            role: Role::Receiver,
            first: 0,
            last: None,
            settled: true,
            state: Some(&accepted),
        };
        assert_eq!(field_count(&disposition), 6);
        let detach = DetachFields {
            handle: 1,
            closed: true,
            error: Some(ErrorFields::new(
                Condition::LinkStolen,
                "a newer epoch took over",
            )),
        };
        assert_eq!(field_count(&detach), 3);
        assert_eq!(field_count(&EndFields { error: None }), 1);
        assert_eq!(field_count(&CloseFields { error: None }), 1);
    }

    #[test]
    fn long_descriptions_are_cut_to_fit_the_smallest_frame() {
        let long = "é".repeat(1000);
        let error = ErrorFields::new(Condition::NotFound, &long);
        assert!(error.description.expect("some").len() <= DESCRIPTION_BYTES_MAX);
        let mut buf = Vec::new();
        let detach = DetachFields {
            handle: u32::MAX,
            closed: true,
            error: Some(error),
        };
        assert!(write_frame(&mut buf, 0, &detach) <= frame::MAX_FRAME_SIZE_MIN as usize);
    }

    #[test]
    fn end_and_close_without_error_are_list8_holding_one_null() {
        let mut buf = Vec::new();
        EndFields { error: None }.encode(&mut buf);
        assert_eq!(buf, [0x00, 0x53, 0x17, 0xc0, 0x02, 0x01, 0x40]);
        buf.clear();
        CloseFields { error: None }.encode(&mut buf);
        assert_eq!(buf, [0x00, 0x53, 0x18, 0xc0, 0x02, 0x01, 0x40]);
    }

    #[test]
    fn transfer_hot_path_matches_the_generic_writer() {
        let transfer = TransferFields {
            handle: 300,
            delivery_id: Some(70_000),
            delivery_tag: Some(&[1, 2, 3, 4]),
            message_format: Some(0),
            settled: Some(true),
            more: true,
            aborted: false,
        };
        let mut fast = Vec::new();
        transfer.encode(&mut fast);
        let mut slow = Vec::new();
        transfer.encode_slow(&mut slow);
        assert_eq!(fast, slow);
    }

    #[test]
    fn golden_sasl_init_as_pyamqp_sends_it_decodes() {
        // The SASL init pyamqp was observed to send, frame header included.
        let mut bytes = vec![0x00, 0x00, 0x00, 0x26, 0x02, 0x01, 0x00, 0x00];
        bytes.extend_from_slice(&[0x00, 0x53, 0x41, 0xc0, 0x19, 0x03, 0xa3, 0x09]);
        bytes.extend_from_slice(b"ANONYMOUS");
        bytes.extend_from_slice(&[0xa0, 0x00, 0xa1, 0x09]);
        bytes.extend_from_slice(b"localhost");
        let (frame, used) = frame::split_frame(&bytes, 512)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, 0x26);
        assert_eq!(frame.header.frame_type, frame::TYPE_SASL);
        let SaslFrame::Init(init) = decode_sasl(frame.body).expect("decodes") else {
            panic!("not a sasl-init");
        };
        assert_eq!(init.mechanism.as_str(), "ANONYMOUS");
        assert_eq!(init.initial_response.map(|r| r.to_vec()), Some(Vec::new()));
        assert_eq!(init.hostname.as_deref(), Some("localhost"));
    }

    #[test]
    fn unknown_descriptor_is_a_decode_error() {
        let body = [0x00, 0x53, 0x19, 0xc0, 0x01, 0x00];
        assert!(matches!(decode(&body), Err(FrameError::Decode { .. })));
        let sasl = [0x00, 0x53, 0x49, 0xc0, 0x01, 0x00];
        assert!(matches!(decode_sasl(&sasl), Err(FrameError::Decode { .. })));
    }
}
