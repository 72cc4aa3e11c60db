//! One link endpoint: its role, state, credit and delivery-count, and the reassembly of an
//! incoming multi-frame delivery.
//!
//! ```text
//!              peer attach                 caller accept / auto (management)
//!   (none) ──────────────▶ AttachPending ─────────────────────────────▶ Attached
//!                              │ caller refuse: attach + detach(error)      │ caller detach / link error:
//!                              ▼                                            ▼ detach(error)
//!                          DetachSent ◀─────────────────────────────────────┘
//!                              │ peer detach
//!                              ▼
//!                           (freed)         peer detach while AttachPending/Attached:
//!                                           reply detach, Event::LinkDetached, freed
//! ```
//!
//! Credit, in AMQP's terms: when we are the sender, the credit we may use is the receiver's
//! `delivery-count + link-credit` minus our `delivery-count` (serial arithmetic), refreshed
//! by every flow. When we are the receiver, we grant credit so that
//! `credit + held <= window`, where `held` counts deliveries the caller has not finished
//! (unsettled C2D messages, unanswered management requests).

use std::collections::VecDeque;

use crate::management::ManagementNode;
use crate::performative::Role;

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// The peer attached; the caller has not decided yet.
    AttachPending,
    /// Both attaches exchanged.
    Attached,
    /// We sent a closing detach and wait for the peer's.
    DetachSent,
}

/// What the link is for, which decides who handles its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    /// Traffic goes to the caller as events.
    Application,
    /// The client's sender on a management node: we receive requests.
    ManagementRequests(ManagementNode),
    /// The client's receiver on a management node: we send responses.
    ManagementResponses(ManagementNode),
}

/// The part of the peer's attach that a reply echoes, kept until the reply is written.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttachEcho {
    pub source: Option<Vec<u8>>,
    pub target: Option<Vec<u8>>,
    /// The peer's desired capabilities, offered back.
    pub capabilities: Option<Vec<u8>>,
    pub snd_settle_mode: u8,
}

/// A delivery being reassembled from `more = true` transfers.
#[derive(Debug)]
pub(crate) struct Partial {
    pub delivery_id: u32,
    pub delivery_tag: Vec<u8>,
    pub settled: bool,
    pub payload: Vec<u8>,
}

/// One link endpoint.
///
/// # Invariants
/// - `role` is ours; the peer plays the other one.
/// - When we receive: `credit + held <= window`.
/// - `partial` is `Some` only between the first and the last transfer of a delivery, and its
///   payload never exceeds `max_message_size`.
#[derive(Debug)]
pub(crate) struct Link {
    pub generation: u32,
    pub name: String,
    pub role: Role,
    pub state: LinkState,
    pub kind: LinkKind,
    pub echo: Option<AttachEcho>,
    /// The peer's max-message-size, for what we send.
    pub peer_max_message_size: Option<u64>,
    /// Deliveries sent (sender) or received (receiver), as AMQP's delivery-count.
    pub delivery_count: u32,
    /// Credit we may use (sender) or have granted (receiver).
    pub credit: u32,
    /// The peer asked us to drain (sender).
    pub drain: bool,
    /// Encoded responses waiting for credit (management responses).
    pub queued: VecDeque<Vec<u8>>,
    /// The credit window we keep granted (receiver).
    pub window: u32,
    /// Deliveries received that the caller has not settled or answered (receiver).
    pub held: u32,
    /// Unsettled incoming delivery ids the caller may settle (receiver).
    pub unsettled: Vec<u32>,
    pub partial: Option<Partial>,
    pub max_message_size: u64,
}

impl Link {
    /// Sender side: recomputes our credit from the receiver's flow.
    pub fn apply_receiver_flow(&mut self, delivery_count: Option<u32>, link_credit: u32) {
        debug_assert_eq!(self.role, Role::Sender);
        // A flow before the receiver saw our attach carries no delivery-count: it means
        // our initial delivery-count, which is always 0.
        let their_count = delivery_count.unwrap_or(0);
        // Deliveries we sent that the receiver had not seen when it wrote the flow (serial
        // arithmetic). A count ahead of ours is a peer error; it is read as none in flight.
        let in_flight = self.delivery_count.wrapping_sub(their_count);
        let in_flight = if in_flight < 1 << 31 { in_flight } else { 0 };
        self.credit = link_credit.saturating_sub(in_flight);
    }

    /// Receiver side: the credit to grant now, if the granted credit fell to half the window
    /// or below what is free. `None` means no flow is needed.
    pub fn credit_refill(&mut self) -> Option<u32> {
        debug_assert_eq!(self.role, Role::Receiver);
        let free = self.window.saturating_sub(self.held);
        if self.credit < free && self.credit <= free / 2 {
            self.credit = free;
            Some(free)
        } else {
            None
        }
    }

    /// Sender side: uses one credit for a delivery just sent.
    pub fn consume_credit(&mut self) {
        debug_assert!(self.credit > 0, "a delivery was sent without credit");
        self.credit -= 1;
        self.delivery_count = self.delivery_count.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(role: Role) -> Link {
        Link {
            generation: 0,
            name: "l".into(),
            role,
            state: LinkState::Attached,
            kind: LinkKind::Application,
            echo: None,
            peer_max_message_size: None,
            delivery_count: 0,
            credit: 0,
            drain: false,
            queued: VecDeque::new(),
            window: 10,
            held: 0,
            unsettled: Vec::new(),
            partial: None,
            max_message_size: 1024,
        }
    }

    #[test]
    fn sender_credit_follows_the_receivers_delivery_count() {
        let mut sender = link(Role::Sender);
        sender.apply_receiver_flow(None, 300);
        assert_eq!(sender.credit, 300);
        for _ in 0..100 {
            sender.consume_credit();
        }
        assert_eq!(sender.credit, 200);
        // The receiver's flow was sent before it saw our last 100 deliveries.
        sender.apply_receiver_flow(Some(0), 300);
        assert_eq!(sender.credit, 200);
        // A flow that is older still gives no credit rather than a huge one.
        sender.delivery_count = 500;
        sender.apply_receiver_flow(Some(0), 300);
        assert_eq!(sender.credit, 0);
    }

    #[test]
    fn sender_credit_may_exceed_two_to_the_31() {
        let mut sender = link(Role::Sender);
        sender.apply_receiver_flow(Some(0), u32::MAX);
        assert_eq!(sender.credit, u32::MAX);
        sender.consume_credit();
        sender.apply_receiver_flow(Some(0), u32::MAX);
        assert_eq!(sender.credit, u32::MAX - 1);
    }

    #[test]
    fn sender_credit_survives_delivery_count_wrap() {
        let mut sender = link(Role::Sender);
        sender.delivery_count = u32::MAX - 1;
        sender.apply_receiver_flow(Some(u32::MAX - 1), 5);
        assert_eq!(sender.credit, 5);
        for _ in 0..3 {
            sender.consume_credit();
        }
        assert_eq!(sender.delivery_count, 1);
        assert_eq!(sender.credit, 2);
    }

    #[test]
    fn receiver_refills_at_half_window_and_counts_held_deliveries() {
        let mut receiver = link(Role::Receiver);
        assert_eq!(receiver.credit_refill(), Some(10));
        receiver.credit = 6;
        assert_eq!(receiver.credit_refill(), None);
        receiver.credit = 5;
        receiver.held = 4;
        assert_eq!(
            receiver.credit_refill(),
            None,
            "5 of 6 free slots are still granted"
        );
        receiver.credit = 2;
        assert_eq!(receiver.credit_refill(), Some(6));
        receiver.held = 10;
        receiver.credit = 0;
        assert_eq!(receiver.credit_refill(), None, "everything is held");
    }
}
