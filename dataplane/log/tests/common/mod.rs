//! Helpers shared by the integration tests: small configurations, owned records and their
//! proptest strategies, and a reader that collects everything committed.

#![allow(dead_code)] // each test file uses a different subset

use dataplane_log::{
    AckMode, PartitionConfig, PartitionReader, RecordHeader, RecordInput, RecordView,
    StartPosition, WritePath,
};
use proptest::prelude::*;

/// Segments of 64 KiB and an index entry every 256 bytes: many rolls and many entries from few
/// records.
pub fn small_config(write_path: WritePath, ack: AckMode) -> PartitionConfig {
    PartitionConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 256,
        write_path,
        ack,
        retention_ms: None,
        retention_bytes: None,
        prefault: true,
        zero_fill: false,
        prepare_next_at_percent: 50,
        staged_bytes_max: 1 << 20,
    }
}

/// A record with owned fields, comparable with what a reader returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedInput {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub user_id: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub creation_time_ms: Option<i64>,
    pub expiry_time_ms: Option<i64>,
    pub connection_device_id: Option<String>,
    pub connection_module_id: Option<String>,
    pub auth_method: Option<String>,
    pub auth_generation_id: Option<String>,
    pub message_source: Option<String>,
    pub properties: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub interface_id: Option<String>,
    pub component_name: Option<String>,
    pub data_schema: Option<String>,
    pub output_name: Option<String>,
}

impl OwnedInput {
    /// A record whose payload is derived from `seed` (recognisable after a crash).
    pub fn numbered(seed: u64, payload_bytes: usize) -> OwnedInput {
        let mut payload = seed.to_le_bytes().repeat(payload_bytes / 8 + 1);
        payload.truncate(payload_bytes.max(8));
        OwnedInput {
            message_id: Some(format!("m-{seed}")),
            connection_device_id: Some(format!("device-{}", seed % 7)),
            properties: vec![("seq".to_owned(), seed.to_string())],
            payload,
            ..OwnedInput::default()
        }
    }

    pub fn property_refs(&self) -> Vec<(&str, &str)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn input<'a>(&'a self, properties: &'a [(&'a str, &'a str)]) -> RecordInput<'a> {
        RecordInput {
            message_id: self.message_id.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            user_id: self.user_id.as_deref(),
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
            creation_time_ms: self.creation_time_ms,
            expiry_time_ms: self.expiry_time_ms,
            connection_device_id: self.connection_device_id.as_deref(),
            connection_module_id: self.connection_module_id.as_deref(),
            auth_method: self.auth_method.as_deref(),
            auth_generation_id: self.auth_generation_id.as_deref(),
            message_source: self.message_source.as_deref(),
            properties,
            payload: &self.payload,
            interface_id: self.interface_id.as_deref(),
            component_name: self.component_name.as_deref(),
            data_schema: self.data_schema.as_deref(),
            output_name: self.output_name.as_deref(),
        }
    }

    /// Reads a record back through the verified flatbuffers accessor.
    pub fn from_view(view: &RecordView<'_>) -> OwnedInput {
        let body = view.body().expect("body verifies");
        assert_eq!(
            view.payload().expect("payload lookup"),
            body.payload().bytes()
        );
        OwnedInput {
            message_id: body.message_id().map(str::to_owned),
            correlation_id: body.correlation_id().map(str::to_owned),
            user_id: body.user_id().map(|v| v.bytes().to_vec()),
            content_type: body.content_type().map(str::to_owned),
            content_encoding: body.content_encoding().map(str::to_owned),
            creation_time_ms: body.creation_time_ms(),
            expiry_time_ms: body.expiry_time_ms(),
            connection_device_id: body.connection_device_id().map(str::to_owned),
            connection_module_id: body.connection_module_id().map(str::to_owned),
            auth_method: body.auth_method().map(str::to_owned),
            auth_generation_id: body.auth_generation_id().map(str::to_owned),
            message_source: body.message_source().map(str::to_owned),
            properties: body
                .properties()
                .map(|v| {
                    v.iter()
                        .map(|p| (p.key().to_owned(), p.value().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            payload: body.payload().bytes().to_vec(),
            interface_id: body.interface_id().map(str::to_owned),
            component_name: body.component_name().map(str::to_owned),
            data_schema: body.data_schema().map(str::to_owned),
            output_name: body.output_name().map(str::to_owned),
        }
    }
}

/// Appends owned records as one batch.
pub fn append_owned(
    partition: &mut dataplane_log::Partition,
    batch: &[OwnedInput],
    now_ms: i64,
) -> dataplane_log::Result<dataplane_log::AppendReceipt> {
    let properties: Vec<Vec<(&str, &str)>> = batch.iter().map(OwnedInput::property_refs).collect();
    let inputs: Vec<RecordInput<'_>> = batch
        .iter()
        .zip(&properties)
        .map(|(r, p)| r.input(p))
        .collect();
    partition.append(&inputs, now_ms)
}

/// Every committed record from `start`, with its header.
pub fn read_from(
    reader: &PartitionReader,
    start: StartPosition,
) -> Vec<(RecordHeader, OwnedInput)> {
    let mut cursor = reader.cursor(start);
    let mut records = Vec::new();
    while let Some(view) = cursor.next().expect("committed records read back") {
        assert!(view.crc_is_valid());
        records.push((*view.header(), OwnedInput::from_view(&view)));
    }
    records
}

/// Every committed record.
pub fn read_all(reader: &PartitionReader) -> Vec<(RecordHeader, OwnedInput)> {
    read_from(reader, StartPosition::Earliest)
}

fn small_string() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9-]{1,12}", "\\PC{0,6}"]
}

/// Arbitrary records: every field (also those added after the first release) sometimes
/// present, properties in order, payloads up to 700 bytes.
pub fn arb_input() -> impl Strategy<Value = OwnedInput> {
    (
        (
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
        ),
        (
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::collection::vec((small_string(), small_string()), 0..4),
            proptest::collection::vec(any::<u8>(), 0..700),
        ),
        (
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
            proptest::option::of(small_string()),
        ),
    )
        .prop_map(|(a, b, c)| OwnedInput {
            message_id: a.0,
            correlation_id: a.1,
            user_id: a.2,
            content_type: a.3,
            content_encoding: a.4,
            creation_time_ms: a.5,
            expiry_time_ms: a.6,
            connection_device_id: b.0,
            connection_module_id: b.1,
            auth_method: b.2,
            auth_generation_id: b.3,
            message_source: b.4,
            properties: b.5,
            payload: b.6,
            interface_id: c.0,
            component_name: c.1,
            data_schema: c.2,
            output_name: c.3,
        })
}

/// A small deterministic generator for tests that pick random positions (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A seed from the environment (`SHOAL_TEST_SEED`) or the clock, printed for replay.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("SHOAL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: SHOAL_TEST_SEED={seed}");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }
}

/// Where a record sits on disk.
#[derive(Debug, Clone)]
pub struct RecordSpan {
    pub path: std::path::PathBuf,
    /// File position of the record.
    pub position: u64,
    /// Header plus body bytes.
    pub length: u64,
    /// Length rounded up to 8.
    pub stride: u64,
    pub sequence: u64,
    /// Whether it is in the last (active) segment.
    pub in_active: bool,
    /// Whether it is the last record of its segment.
    pub last_in_segment: bool,
}

/// Segment files of a directory, with their base offsets, oldest first.
pub fn segment_files(dir: &std::path::Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".segment")?
                .to_owned();
            Some((name.parse().ok()?, path))
        })
        .collect();
    files.sort();
    files
}

/// The layout of every committed record of the partition in `dir` (opened and closed again).
pub fn record_spans(dir: &std::path::Path, config: &PartitionConfig) -> Vec<RecordSpan> {
    let (partition, _) =
        dataplane_log::Partition::open(dir, dataplane_log::PartitionId(0), config.clone())
            .expect("open");
    let files = segment_files(dir);
    let mut spans: Vec<RecordSpan> = Vec::new();
    let mut cursor = partition.reader().cursor(StartPosition::Earliest);
    while let Some(view) = cursor.next().expect("read") {
        let offset = view.offset().0;
        let at = files.partition_point(|(base, _)| *base <= offset) - 1;
        let (base, path) = &files[at];
        let length = view.raw().len() as u64;
        if let Some(previous) = spans.last_mut() {
            previous.last_in_segment = previous.path != *path;
        }
        spans.push(RecordSpan {
            path: path.clone(),
            position: 64 + offset - base,
            length,
            stride: length.next_multiple_of(8),
            sequence: view.sequence().0,
            in_active: at + 1 == files.len(),
            last_in_segment: true,
        });
    }
    spans
}

/// Copies every file of `from` into the empty directory `to`.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("list") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("file name"))).expect("copy");
    }
}
