//! The thread-per-core data plane: shards, listeners, sessions, ingest.
