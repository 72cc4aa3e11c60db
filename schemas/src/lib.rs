//! Flatbuffers schemas shared by the planes, with their generated Rust.
//!
//! The `.fbs` files in this directory are the source of truth; the Rust under `src/generated/`
//! is produced by `flatc` 25.12.19 and checked in (`schemas/regenerate.sh --check` proves it is
//! current). This crate must never depend on a runtime, a socket or a file.
