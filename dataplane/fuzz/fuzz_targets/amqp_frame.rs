//! Arbitrary bytes into a server-side AMQP `Connection` (SASL, AMQP header, any frames),
//! split into chunks chosen by the first byte, with a caller that accepts every link,
//! answers every request and sends on every credit.
//!
//! Invariants (checked by `dataplane_amqp::fuzzing::drive`, a panic when broken): no
//! panic on any input; everything transmitted is protocol headers and complete frames with
//! doff 2 whose performatives and SASL bodies decode; no frame exceeds the peer's
//! max-frame-size; buffered input stays within the configured bound; `Closed` is the last
//! event.
//!
//! Seed corpus: the property test's conversation in
//! `dataplane/amqp/tests/random_input.rs` reaches every handler.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dataplane_amqp::fuzzing::drive(data);
});
