//! `shoal-perf`: a device-swarm load generator for MQTT brokers, Shoal first.
//!
//! It drives N simulated devices over MQTT 3.1.1 (TLS or plain TCP) from one pinned thread,
//! either against Shoal with IoT Hub semantics (registered devices, SAS passwords,
//! `devices/{id}/messages/events/`) or against any MQTT broker with plain semantics
//! (`perf-{n}` on `perf/{n}`), measures connect time, PUBACK latency and, with the Event
//! Hubs-compatible consumer, publish-to-consume latency, and reports the server's CPU and
//! memory next to its own CPU so a reader can tell who was the bottleneck. It also contains
//! the floor broker (`shoal-perf floor-broker`), which does nothing but answer CONNACK and
//! PUBACK, to show what the machine allows.
//!
//! Must never depend on: the data plane's server code. It talks to servers over the network
//! and through their public client APIs only, so it measures what a device would see.
//!
//! # Invariants worth naming
//! - Every QoS 1 message sent ends in exactly one of `acked` or one error kind:
//!   `sent == acked + errors` once a run has finished ([`stats::PublishCounts`]).
//! - In open-loop runs latency is measured from the *intended* send time, so a stalled
//!   server (or generator) cannot hide the messages it delayed (coordinated omission,
//!   [`schedule`]).
//! - The hot path allocates nothing per message: publishes are written into per-connection
//!   buffers that keep their capacity.
//! - The generator measures itself: its own thread CPU and its timer lag are reported with
//!   every result.

pub mod clock;
pub mod compare;
pub mod consumer;
pub mod driver;
pub mod floor;
pub mod mqtt;
pub mod net;
pub mod payload;
pub mod procfs;
pub mod registry;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod shoal;
pub mod stats;
pub mod svg;
pub mod tls;
