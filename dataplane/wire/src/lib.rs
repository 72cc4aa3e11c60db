//! Sans-IO protocol pieces for device connections: MQTT 3.1.1 framing ([`mqtt`]), IoT Hub's
//! rules on top of it ([`iothub`]), and shared access signatures ([`sas`]).
//!
//! The data plane owns the sockets, the clock and the state; this crate only turns bytes into
//! packets, packets into meanings, and answers back into bytes. It must never depend on
//! glommio, tokio, sockets or clock reads: the caller passes the time in (`now_secs`). That
//! keeps it testable with plain unit tests, proptest, cargo-fuzz and Miri.
//!
//! # Invariants worth naming
//!
//! - **Bounded before buffered.** [`mqtt::Decoder`] refuses a packet longer than its bound
//!   from the packet's first 2-5 bytes; it never asks the caller to buffer more than the bound,
//!   and never allocates more than the bound at once.
//! - **Zero-copy hot path.** Decoding a PUBLISH and parsing its IoT Hub topic and property bag
//!   allocate nothing unless a property holds a percent-escape; the payload is a slice of the
//!   receive buffer.
//! - **Canonical frames.** Every accepted PUBLISH re-encodes to exactly the bytes it arrived
//!   as, so what is logged, forwarded or fuzzed is what the device sent.
//! - **QoS 0 and 1 only.** A QoS 2 PUBLISH is an error; QoS 2 never reaches a session.
//! - **Errors are answers.** Every error of [`mqtt::Error`] and [`iothub::Error`] maps to what
//!   the device sees ([`mqtt::Reaction`]: a CONNACK code, a disconnect, or nothing for an
//!   outgoing packet that cannot be encoded), and bad input is an error, never a panic.
//! - **Identity is checked where it is named.** Topic and subscription parsers take the
//!   connection's [`iothub::ClientId`] and refuse topics naming anyone else.
//! - **Round trips.** Every topic the `iothub::write_*` builders produce parses back to the
//!   values it was built from.

#![warn(missing_docs)]

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod iothub;
pub mod mqtt;
pub mod sas;

/// The `bytes` crate this crate's buffers come from, so callers use the same version.
pub use bytes;
