//! Partition logs: mmap'd segment files that lose nothing acknowledged.
//!
//! Runtime-free: this crate must never depend on glommio, tokio or any executor.
