//! Sans-IO AMQP 1.0 for Shoal's data plane: frames, the type system, SASL, the server side
//! of connections, sessions and links with flow control, the `$cbs`/`$management` nodes, and
//! the Event Hubs event encoding.
//!
//! This crate must never depend on glommio, tokio, sockets or clock reads: the caller owns
//! the socket and passes time in, so the whole protocol can be fuzzed, property-tested and
//! driven by a real client through a std-only stub (`examples/eventhub_stub.rs`).
//!
//! # Driving a connection
//!
//! ```
//! use std::time::Instant;
//! use dataplane_amqp::{Config, Connection, Event};
//! use dataplane_amqp::sasl::SaslOutcome;
//!
//! let mut connection = Connection::new(Config::default(), Instant::now());
//! let mut transmit = Vec::new();
//! // Bytes read from the socket (here: a client starting SASL).
//! connection.handle_bytes(b"AMQP\x03\x01\x00\x00", Instant::now());
//! while let Some(event) = connection.poll_event() {
//!     match event {
//!         Event::SaslInit(_) => connection.complete_sasl(SaslOutcome::Ok).unwrap(),
//!         Event::ReceiverAttach(attach) => connection.accept_link(attach.link).unwrap(),
//!         Event::Closed(_) => break,
//!         _ => {}
//!     }
//! }
//! connection.poll_transmit(Instant::now(), &mut transmit); // write these to the socket
//! assert!(transmit.starts_with(b"AMQP\x03\x01\x00\x00"));
//! // …and call `handle_timeout` at `next_timeout()`.
//! ```
//!
//! # Wire layout
//!
//! ```text
//! connection = header(SASL) sasl-frame* header(AMQP) amqp-frame*
//!
//! ┌──────────────┬──────┬──────┬──────────┬──────────────────────────────────────────────┐
//! │ size u32 BE  │ doff │ type │ channel  │ body                                         │
//! │ (whole frame)│ = 2  │ 0 | 1│ u16 BE   │ 00 53 <code> c0|d0 <size> <count> fields…    │
//! └──────────────┴──────┴──────┴──────────┴──────────────────────────────────────────────┘
//!                                           transfer: performative then the message bytes
//!                                           empty body: heartbeat
//! ```
//!
//! The modules, bottom up: [`codec`] (primitives by hand, a bounded value validator),
//! [`frame`], [`performative`] (decode with fe2o3-amqp-types, write every field by hand),
//! [`sasl`], [`connection`] (with private `session` and `link` state), [`message`]
//! (incoming sections, C2D), [`management`], [`address`], [`event`] (the hot-path encoder),
//! [`error`] (conditions and one error enum per layer), [`fuzzing`].
//!
//! # Invariants worth naming
//!
//! - **No input panics.** Every encoded value passes [`codec::value_len`] (depth at most
//!   [`codec::DEPTH_MAX`], counts consistent with sizes) before serde_amqp sees it; every
//!   protocol error becomes an AMQP condition ([`error`]) and a close, end or detach.
//! - **Nothing unbounded is buffered.** A frame header larger than our max-frame-size ends
//!   the connection before its body is read; reassembled messages stop at the link's
//!   max-message-size; sessions, links, unsettled deliveries and pending management requests
//!   are all bounded by [`Config`].
//! - **Every performative we write has every field** (open 10, begin 8, attach 14, flow 11,
//!   transfer 11, disposition 6, detach 3, end 1, close 1) behind a `00 53` descriptor in
//!   a list8/list32, with doff 2: the pyamqp decoder in azure-eventhub indexes fields by
//!   position.
//! - **Every frame we write fits the peer's max-frame-size.** Transfers are split; an
//!   attach reply that cannot fit closes with `amqp:frame-size-too-small`; error
//!   descriptions are cut to fit the smallest legal frame.
//! - **Flow control is never violated by us.** A transfer goes out only with link credit
//!   and session window; credit is computed from the receiver's delivery-count.
//! - **`Event::Closed` is reported exactly once and is the last event.**

#![warn(missing_docs)]

pub mod address;
pub mod codec;
pub mod connection;
pub mod error;
pub mod event;
pub mod frame;
pub mod fuzzing;
mod link;
pub mod management;
pub mod message;
pub mod performative;
pub mod sasl;
mod session;

pub use connection::{
    CloseReason, Config, Connection, Event, IncomingMessage, LinkId, ReceiverAttach, RequestId,
    SenderAttach,
};
pub use error::{ApiError, Condition, ErrorInfo};
