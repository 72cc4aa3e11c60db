//! IoT Hub's topic grammar, property bags, user names and SAS scopes on arbitrary input, and
//! the round trips of every topic builder; see `dataplane_wire::fuzzing::iothub_topic` for
//! the invariants it asserts.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| dataplane_wire::fuzzing::iothub_topic(input));
