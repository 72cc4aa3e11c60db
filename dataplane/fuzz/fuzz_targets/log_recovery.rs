//! Arbitrary bytes as partition files (or as damage applied to a valid log), followed
//! read-only first, then open, recover, read, append, reopen;
//! `dataplane_log::fuzzing::log_recovery` asserts the invariants (see its module docs).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dataplane_log::fuzzing::log_recovery(data);
});
