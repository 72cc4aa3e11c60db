//! A device's byte stream into the MQTT decoder; see `dataplane_wire::fuzzing::mqtt_packet`
//! for the invariants it asserts.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| dataplane_wire::fuzzing::mqtt_packet(input));
