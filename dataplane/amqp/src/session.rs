//! One session endpoint: channel mapping, transfer windows, the link table, and the path
//! that turns a message into transfer frames.
//!
//! ```text
//!   peer begin ──▶ Mapped (our begin sent) ──peer end──▶ end sent, links gone, freed
//!                     │ session error
//!                     ▼
//!                  Ending (our end+error sent; frames discarded) ──peer end──▶ freed
//! ```
//!
//! Windows count transfer frames, not messages. Outgoing: we may send while
//! `remote_incoming_window > 0`; the peer widens it with a flow (pyamqp does so when its
//! window reaches 0). Incoming: the peer may send while our `incoming_window > 0`; we
//! reset it to the configured size in a flow once half of it is used.

use std::collections::{BTreeMap, HashMap};

use crate::error::ApiError;
use crate::frame;
use crate::link::Link;
use crate::performative::{Encode, FlowFields, LinkFlowFields, TransferFields, write_frame};

/// An upper bound of a transfer frame's overhead with a 4-byte delivery tag: the 8-byte
/// header plus the 11-field performative (at most 39 bytes).
const TRANSFER_OVERHEAD_MAX: usize = 64;

/// One session.
///
/// # Invariants
/// - `links[h]` is `Some` exactly for the handles in `by_remote`'s values.
/// - Every key of `unsettled_out` is a delivery we sent unsettled and the peer has not
///   settled, and `unsettled_out.len() <= unsettled_max`.
#[derive(Debug)]
pub(crate) struct Session {
    pub local_channel: u16,
    pub remote_channel: u16,
    /// We sent `end` with an error and discard frames until the peer's `end`.
    pub ending: bool,
    pub next_outgoing_id: u32,
    pub remote_incoming_window: u32,
    /// A send failed on a closed window; the next widening flow wakes the caller.
    pub blocked: bool,
    pub next_incoming_id: u32,
    pub incoming_window: u32,
    pub incoming_window_max: u32,
    pub peer_handle_max: u32,
    pub links: Vec<Option<Link>>,
    pub by_remote: HashMap<u32, u32>,
    pub next_delivery_id: u32,
    pub unsettled_out: BTreeMap<u32, (u32, u32)>,
    pub unsettled_max: usize,
}

impl Session {
    /// The link behind one of our handles, if its generation still matches.
    pub fn link_mut(&mut self, handle: u32, generation: u32) -> Option<&mut Link> {
        self.links
            .get_mut(handle as usize)?
            .as_mut()
            .filter(|link| link.generation == generation)
    }

    /// The lowest free handle within the peer's handle-max and our own bound.
    pub fn free_handle(&self, ours_max: u32) -> Option<u32> {
        let limit = self.peer_handle_max.min(ours_max);
        let slot = self
            .links
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.links.len());
        u32::try_from(slot).ok().filter(|&handle| handle <= limit)
    }

    /// Writes a flow: the session state, plus the link's when `link` is given.
    pub fn write_flow(&self, out: &mut Vec<u8>, link: Option<(u32, &Link)>, echo: bool) {
        let link = link.map(|(handle, link)| LinkFlowFields {
            handle,
            delivery_count: Some(link.delivery_count),
            link_credit: Some(link.credit),
            available: None,
            drain: link.drain,
        });
        let flow = FlowFields {
            next_incoming_id: Some(self.next_incoming_id),
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: u32::MAX,
            link,
            echo,
        };
        write_frame(out, self.local_channel, &flow);
    }

    /// Counts one incoming transfer frame against our window; writes a flow that resets
    /// the window once half of it is used. `false` means the frame violated the window.
    pub fn take_incoming_frame(&mut self, out: &mut Vec<u8>) -> bool {
        if self.incoming_window == 0 {
            return false;
        }
        self.incoming_window -= 1;
        self.next_incoming_id = self.next_incoming_id.wrapping_add(1);
        if self.incoming_window <= self.incoming_window_max / 2 {
            self.incoming_window = self.incoming_window_max;
            self.write_flow(out, None, false);
        }
        true
    }

    /// Sends `message` as one delivery on our sender link `handle`, split into frames of at
    /// most `max_frame_size` bytes. Returns the delivery id.
    pub fn send_transfer(
        &mut self,
        out: &mut Vec<u8>,
        handle: u32,
        message: &[u8],
        settled: bool,
        max_frame_size: u32,
    ) -> Result<u32, ApiError> {
        if !settled && self.unsettled_out.len() >= self.unsettled_max {
            return Err(ApiError::TooManyUnsettled {
                max: self.unsettled_max,
            });
        }
        let delivery_id = self.next_delivery_id;
        let window = self.remote_incoming_window as usize;
        let link = self
            .links
            .get_mut(handle as usize)
            .and_then(Option::as_mut)
            .ok_or(ApiError::UnknownLink)?;
        if link.credit == 0 {
            return Err(ApiError::NoCredit);
        }
        if let Some(max) = link.peer_max_message_size.filter(|&max| max > 0)
            && message.len() as u64 > max
        {
            return Err(ApiError::MessageTooLarge {
                size: message.len(),
                max,
            });
        }
        let tag = link.delivery_count.to_be_bytes();
        let mut fields = TransferFields {
            handle,
            delivery_id: Some(delivery_id),
            delivery_tag: Some(&tag),
            message_format: Some(0),
            settled: Some(settled),
            more: false,
            aborted: false,
        };
        let frame_max = max_frame_size as usize;
        let frames = if message.len() + TRANSFER_OVERHEAD_MAX <= frame_max {
            if window == 0 {
                self.blocked = true;
                return Err(ApiError::WindowClosed);
            }
            let start = frame::begin_frame(out, frame::TYPE_AMQP, self.local_channel);
            fields.encode(out);
            out.extend_from_slice(message);
            frame::end_frame(out, start);
            1
        } else {
            // Every frame repeats delivery-id and tag (allowed, and what pyamqp's
            // reassembly keys on); only `more` changes, and it is one byte either way.
            let mut probe = Vec::with_capacity(TRANSFER_OVERHEAD_MAX);
            fields.encode(&mut probe);
            let chunk_max = frame_max - frame::HEADER_BYTES - probe.len();
            let frames = message.len().div_ceil(chunk_max);
            if window < frames {
                self.blocked = true;
                return Err(ApiError::WindowClosed);
            }
            for (index, chunk) in message.chunks(chunk_max).enumerate() {
                fields.more = index + 1 < frames;
                let start = frame::begin_frame(out, frame::TYPE_AMQP, self.local_channel);
                fields.encode(out);
                out.extend_from_slice(chunk);
                let size = frame::end_frame(out, start);
                debug_assert!(
                    size <= frame_max,
                    "a transfer frame exceeded max-frame-size"
                );
            }
            frames
        };
        link.consume_credit();
        let generation = link.generation;
        self.next_delivery_id = self.next_delivery_id.wrapping_add(1);
        let frames = frames as u32;
        self.next_outgoing_id = self.next_outgoing_id.wrapping_add(frames);
        self.remote_incoming_window -= frames;
        if !settled {
            self.unsettled_out.insert(delivery_id, (handle, generation));
        }
        Ok(delivery_id)
    }
}
