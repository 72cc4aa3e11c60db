//! Flatbuffers schemas shared by the planes, with their generated Rust.
//!
//! The `.fbs` files in this directory are the source of truth; the Rust under `src/generated/`
//! is produced by `flatc` 25.12.19 and checked in (`schemas/regenerate.sh --check` proves it is
//! current). This crate must never depend on a runtime, a socket or a file.

pub mod plane;

/// The partition-log record body (`record.fbs`): namespace `shoal.log`, root table `Record`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unsafe_op_in_unsafe_fn,
    unused_imports,
    dead_code,
    non_camel_case_types,
    non_snake_case
)]
#[rustfmt::skip]
#[path = "generated/record_generated.rs"]
mod record_generated;
pub use record_generated::shoal::log as record;
