//! Sans-IO protocol pieces for device connections: MQTT 3.1.1 framing with IoT Hub's topic
//! grammar, and shared access signatures.
//!
//! Sans-IO: this crate must never depend on glommio, tokio, sockets or clock reads; the caller
//! passes the time in.

pub mod sas;
