//! Sans-IO AMQP 1.0 for Shoal: frames, performatives, SASL, connection/session/link state
//! machines, management nodes and the Event Hubs event encoding.
//!
//! Sans-IO: this crate must never depend on glommio, tokio, sockets or clock reads.
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
