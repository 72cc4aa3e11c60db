//! Sans-IO AMQP 1.0: frames, performatives, SASL, connection/session/link state machines.
//!
//! Sans-IO: this crate must never depend on glommio, tokio, sockets or clock reads.
