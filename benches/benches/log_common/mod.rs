//! Shared setup for the partition-log benchmarks: record shapes, partitions in a bench
//! directory, and housekeeping (segment preparation, retention) kept outside timed regions.
//!
//! `SHOAL_BENCH_DIR` picks the directory (default: the system temp dir; use `/dev/shm` to
//! take the filesystem out of the measurement). Under `cargo test --benches` or
//! `cargo bench -- --test` (no `--bench` argument) datasets and segments shrink so that the
//! benches only prove they still run.

#![allow(dead_code)] // each bench uses a different subset

use std::path::PathBuf;

use dataplane_log::{AckMode, Partition, PartitionConfig, PartitionId, RecordInput, WritePath};

/// True under `cargo bench`; false in test mode.
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A scratch directory for one bench.
pub fn bench_dir(name: &str) -> tempfile::TempDir {
    let base = std::env::var_os("SHOAL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    tempfile::Builder::new()
        .prefix(&format!("shoal-{name}-"))
        .tempdir_in(base)
        .expect("bench directory")
}

/// Segment size for throughput benches.
pub fn segment_bytes() -> u64 {
    if measuring() { 256 << 20 } else { 8 << 20 }
}

pub fn config(write_path: WritePath, ack: AckMode, segment_bytes: u64) -> PartitionConfig {
    PartitionConfig {
        segment_bytes,
        index_interval_bytes: 4096,
        write_path,
        ack,
        retention_ms: None,
        retention_bytes: Some(4 * segment_bytes),
        prefault: true,
        zero_fill: std::env::var("SHOAL_BENCH_ZERO_FILL").map_or(true, |v| v != "0"),
        prepare_next_at_percent: PartitionConfig::default().prepare_next_at_percent,
        staged_bytes_max: PartitionConfig::default().staged_bytes_max,
    }
}

pub fn open(dir: &tempfile::TempDir, config: PartitionConfig) -> Partition {
    Partition::open(dir.path(), PartitionId(0), config)
        .expect("open bench partition")
        .0
}

/// Installs a prepared next segment if none is ready, and applies retention: what a data-plane
/// shard does on a background queue, so never inside a timed region.
pub fn housekeeping(partition: &mut Partition) {
    if let Some(prep) = partition.next_segment_request() {
        partition
            .install_prepared(prep.prepare().expect("prepare"))
            .expect("install");
    }
    partition.enforce_retention(0).expect("retention");
}

pub const IOTHUB_PROPERTIES: [(&str, &str); 2] =
    [("temperatureAlert", "false"), ("site", "berlin-3")];

/// The record shapes measured.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Only a payload: the smallest record for a payload size.
    Payload(usize),
    /// A payload with the system properties IoT Hub stamps on device telemetry and two
    /// application properties.
    IotHub(usize),
    /// `IotHub` plus the Plug and Play fields (interface id, component name, data schema).
    IotHubPnp(usize),
}

impl Shape {
    pub fn name(self) -> String {
        match self {
            Shape::Payload(bytes) => format!("payload_{bytes}"),
            Shape::IotHub(bytes) => format!("iothub_{bytes}"),
            Shape::IotHubPnp(bytes) => format!("iothub_pnp_{bytes}"),
        }
    }

    pub fn payload_bytes(self) -> usize {
        match self {
            Shape::Payload(bytes) | Shape::IotHub(bytes) | Shape::IotHubPnp(bytes) => bytes,
        }
    }

    pub fn input(self, payload: &[u8]) -> RecordInput<'_> {
        match self {
            Shape::Payload(_) => RecordInput {
                payload,
                ..RecordInput::default()
            },
            Shape::IotHub(_) => RecordInput {
                message_id: Some("5b3a6d1e-2f4c-4e8a-9d7b-0c1f2e3d4a5b"),
                content_type: Some("application/json"),
                content_encoding: Some("utf-8"),
                creation_time_ms: Some(1_767_225_600_000),
                connection_device_id: Some("sensor-000042"),
                auth_method: Some(
                    r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#,
                ),
                auth_generation_id: Some("638712345678901234"),
                message_source: Some("Telemetry"),
                properties: &IOTHUB_PROPERTIES,
                payload,
                ..RecordInput::default()
            },
            Shape::IotHubPnp(bytes) => RecordInput {
                interface_id: Some("dtmi:azureiot:DeviceManagement:DeviceInformation;1"),
                component_name: Some("thermostat1"),
                data_schema: Some("dtmi:com:example:TemperatureController;2"),
                ..Shape::IotHub(bytes).input(payload)
            },
        }
    }

    /// Bytes one record of this shape takes on disk.
    pub fn record_bytes(self) -> usize {
        let payload = vec![0u8; self.payload_bytes()];
        dataplane_log::record::record_bytes(dataplane_log::record::body_bytes(
            &self.input(&payload),
        ))
    }
}

pub fn write_path_name(write_path: WritePath) -> &'static str {
    match write_path {
        WritePath::Pwrite => "pwrite",
        WritePath::Mmap => "mmap",
    }
}

/// A partition holding `records` records of `shape` in written mode, flushed, for read benches.
pub fn filled(
    dir: &tempfile::TempDir,
    shape: Shape,
    records: usize,
    segment_bytes: u64,
) -> Partition {
    let config = PartitionConfig {
        retention_bytes: None,
        ..config(WritePath::Pwrite, AckMode::Written, segment_bytes)
    };
    let mut partition = open(dir, config);
    let payload = vec![0x42u8; shape.payload_bytes()];
    let batch: Vec<RecordInput<'_>> = (0..256).map(|_| shape.input(&payload)).collect();
    let mut appended = 0;
    let mut now_ms = 1_000;
    while appended < records {
        let n = (records - appended).min(batch.len());
        housekeeping(&mut partition);
        partition.append(&batch[..n], now_ms).expect("append");
        appended += n;
        now_ms += 1;
    }
    partition.flush_now().expect("flush");
    partition
}
