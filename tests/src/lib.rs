//! System-test harness: starts the real `shoal` binary on a fresh data directory.
