//! Partition configuration and its bounds.

use crate::error::{Error, Result};
use crate::index::INDEX_ENTRY_BYTES;
use crate::record::RECORD_BYTES_MIN;
use crate::segment::SEGMENT_HEADER_BYTES;

/// Smallest segment file, header included. Small segments are for tests; production uses
/// hundreds of MiB so that rolls (and their rename + directory sync) are rare.
pub const SEGMENT_BYTES_MIN: u64 = 16 * 1024;

/// Largest segment file. Positions inside a segment are `u32` on disk (records and index
/// entries), so the data area must stay below 4 GiB.
pub const SEGMENT_BYTES_MAX: u64 = (1 << 32) - 4096;

/// Smallest index interval: below one minimal record per entry the index only costs memory.
pub const INDEX_INTERVAL_BYTES_MIN: u32 = RECORD_BYTES_MIN as u32;

/// Largest index interval: a lookup scans at most this many bytes after the binary search.
pub const INDEX_INTERVAL_BYTES_MAX: u32 = 1 << 20;

/// Page granularity that segment sizes must respect (mapping and preallocation work in pages).
pub const SEGMENT_BYTES_ALIGNMENT: u64 = 4096;

/// Largest [`PartitionConfig::staged_bytes_max`]: the staging buffer is memory each partition
/// holds between flushes, so its bound stays far below a segment.
pub const STAGED_BYTES_MAX_LIMIT: u32 = 64 << 20;

/// Largest [`PartitionConfig::prepare_next_at_percent`]: past it the preparation gets less
/// than a tenth of a segment's fill time to finish before the roll needs it.
pub const PREPARE_NEXT_AT_PERCENT_MAX: u8 = 90;

const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(SEGMENT_BYTES_ALIGNMENT));
const _: () = assert!(SEGMENT_BYTES_MAX.is_multiple_of(SEGMENT_BYTES_ALIGNMENT));
const _: () = assert!(SEGMENT_BYTES_MAX - (SEGMENT_HEADER_BYTES as u64) < (1 << 32));
const _: () = assert!(INDEX_INTERVAL_BYTES_MIN >= 64);
const _: () = assert!(INDEX_ENTRY_BYTES as u32 <= INDEX_INTERVAL_BYTES_MIN);

/// How appended bytes reach the segment file. Both paths land in the same page cache, so
/// readers (who always read through the mapping) see the bytes either way.
///
/// # Decision (measured with `benches/benches/log_append.rs`, details in `DECISIONS.md`)
/// `Pwrite` is the default in both ack modes. `Mmap` appends faster, but a store into a page the
/// kernel is writing back waits for that write: in `written` mode at 49.5k msgs/s (the server
/// under `shoal-perf`), PUBACK p99 was 141 ms through the mapping against 4.2 ms with `Pwrite`.
/// The throughput and flush figures:
/// - durable append of a 64 KiB batch + `fdatasync` on ext4, 1,500 round-robin iterations:
///   p50 233 µs with `Pwrite` into zero-filled segments, 316 µs with `Pwrite` into fallocated
///   segments, 394 µs with `Mmap` (p99 1.7 / 1.9 / 2.0 ms);
/// - written-mode appends of 256-byte payloads (344 B records) in batches of 256, encode + CRC +
///   index included: `Mmap` 14.8 M records/s on tmpfs and 11.2-11.9 M/s on ext4, `Pwrite`
///   9.2 M/s on tmpfs and 6.3-9.3 M/s on ext4 (the kernel copy and per-page bookkeeping of
///   `pwrite` cost about as much as encoding);
/// - 16 KiB records in batches of 256: `Mmap` 6.9 GB/s, `Pwrite` 3.7 GB/s on tmpfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePath {
    /// Encode the batch into a reusable staging buffer and `pwrite` it: one syscall per batch,
    /// or in durable mode one per flush request, since the bytes stay staged until then (see
    /// [`PartitionConfig::staged_bytes_max`]). The segment mapping stays read-only.
    #[default]
    Pwrite,
    /// Encode straight into a writable shared mapping of the pre-faulted segment: no syscall and
    /// one copy fewer, but pre-faulting for write dirties the whole segment (the kernel writes
    /// the zeros back) and `fdatasync` after dirtying pages through a mapping is slower.
    Mmap,
}

/// When an append counts as acknowledged, which is also when readers may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// Committed (visible to readers, safe to acknowledge) only after a flush (`fdatasync`)
    /// covering the record completed. Survives power loss.
    #[default]
    Durable,
    /// Committed as soon as the bytes are in the page cache. Survives a process crash, not a
    /// power loss.
    Written,
}

/// Configuration of one partition. Immutable once the partition is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionConfig {
    /// Size of each new segment file in bytes, header included (multiple of 4096, within
    /// [`SEGMENT_BYTES_MIN`]..=[`SEGMENT_BYTES_MAX`]). Existing segments keep their size.
    pub segment_bytes: u64,
    /// One index entry per this many bytes of records (within
    /// [`INDEX_INTERVAL_BYTES_MIN`]..=[`INDEX_INTERVAL_BYTES_MAX`]).
    pub index_interval_bytes: u32,
    /// How records reach the file.
    pub write_path: WritePath,
    /// When records are committed.
    pub ack: AckMode,
    /// Delete sealed segments whose newest record is older than this. `None` keeps them.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while the partition's segment files exceed this many
    /// bytes. `None` keeps them.
    pub retention_bytes: Option<u64>,
    /// Pre-fault each new segment while preparing it, so that the append path never touches a
    /// cold page. Off only for tests and fuzzing where segments are tiny and short-lived. A
    /// segment prepared inline at a roll (none was ready) is never pre-faulted or zeroed.
    pub prefault: bool,
    /// Write zeros over each new segment (and sync them) while preparing it, instead of only
    /// reserving the blocks with `fallocate`. On ext4 and XFS a write into a fallocated
    /// ("unwritten") extent makes the next `fdatasync` also commit the extent conversion to the
    /// journal; into zeroed blocks it is a plain overwrite. Costs one extra write of every
    /// segment, off the append path (a segment prepared inline at a roll is not zeroed). See
    /// `DECISIONS.md` for the measurements.
    pub zero_fill: bool,
    /// How full (in percent of its data area) the active segment must be before
    /// [`Partition::next_segment_request`](crate::Partition::next_segment_request) asks for the
    /// next one (0..=[`PREPARE_NEXT_AT_PERCENT_MAX`]; 0 asks right after each roll).
    ///
    /// A prepared segment is as large as the active one and, pre-faulted, just as resident, so
    /// preparing right after a roll keeps two segments in memory per partition for the whole
    /// life of each segment. Asking at half keeps the spare only for the second half. The roll
    /// stays off the append path as long as appends fill the remaining part no faster than the
    /// preparation writes a whole segment: at 50 % the append rate may reach half the
    /// preparation rate (measured in `DECISIONS.md`).
    pub prepare_next_at_percent: u8,
    /// Durable mode on the pwrite path: appends are encoded into a staging buffer and reach the
    /// file with one `pwrite` when the next flush request is taken (nothing is visible or
    /// acknowledged before that flush anyway), at a roll, or earlier once this many bytes are
    /// staged, so that memory stays bounded (a larger batch is staged alone). 0 writes every
    /// append at once. Ignored in `written` mode (each append is written: it commits at once)
    /// and on the mmap path (appends are encoded into the mapping). At most
    /// [`STAGED_BYTES_MAX_LIMIT`]. With 100 single-record appends per flush this cut the owner
    /// thread's work from 75-97 µs to 14-21 µs on ext4 (`DECISIONS.md`, section 8).
    pub staged_bytes_max: u32,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            write_path: WritePath::Pwrite,
            ack: AckMode::Durable,
            retention_ms: Some(86_400_000),
            retention_bytes: None,
            prefault: true,
            zero_fill: true,
            prepare_next_at_percent: 50,
            staged_bytes_max: 1 << 20,
        }
    }
}

impl PartitionConfig {
    /// Checks every field against its bounds.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            return invalid("segment_bytes", "is below SEGMENT_BYTES_MIN");
        }
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return invalid("segment_bytes", "is above SEGMENT_BYTES_MAX");
        }
        if !self.segment_bytes.is_multiple_of(SEGMENT_BYTES_ALIGNMENT) {
            return invalid("segment_bytes", "is not a multiple of 4096");
        }
        if self.index_interval_bytes < INDEX_INTERVAL_BYTES_MIN {
            return invalid("index_interval_bytes", "is below INDEX_INTERVAL_BYTES_MIN");
        }
        if self.index_interval_bytes > INDEX_INTERVAL_BYTES_MAX {
            return invalid("index_interval_bytes", "is above INDEX_INTERVAL_BYTES_MAX");
        }
        if self.retention_ms == Some(0) {
            return invalid("retention_ms", "is zero (use None to keep everything)");
        }
        // Retention compares times as i64 milliseconds; a larger age would wrap and delete
        // every sealed segment.
        if self
            .retention_ms
            .is_some_and(|ms| i64::try_from(ms).is_err())
        {
            return invalid("retention_ms", "is above i64::MAX milliseconds");
        }
        if self.retention_bytes == Some(0) {
            return invalid("retention_bytes", "is zero (use None to keep everything)");
        }
        if self.prepare_next_at_percent > PREPARE_NEXT_AT_PERCENT_MAX {
            return invalid(
                "prepare_next_at_percent",
                "is above PREPARE_NEXT_AT_PERCENT_MAX",
            );
        }
        if self.staged_bytes_max > STAGED_BYTES_MAX_LIMIT {
            return invalid("staged_bytes_max", "is above STAGED_BYTES_MAX_LIMIT");
        }
        Ok(())
    }

    /// Whether appends stage their bytes until the next flush request (see
    /// [`PartitionConfig::staged_bytes_max`]).
    pub fn stages_writes(&self) -> bool {
        self.ack == AckMode::Durable
            && self.write_path == WritePath::Pwrite
            && self.staged_bytes_max > 0
    }

    /// Bytes available for records in a new segment.
    pub fn segment_data_bytes(&self) -> u64 {
        assert!(self.segment_bytes > SEGMENT_HEADER_BYTES as u64);
        self.segment_bytes - SEGMENT_HEADER_BYTES as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_durable() {
        // Setup: the defaults. Expectation: they validate, and the durable mode is the default.
        let config = PartitionConfig::default();
        config.validate().expect("defaults are valid");
        assert_eq!(config.ack, AckMode::Durable);
        assert_eq!(config.write_path, WritePath::Pwrite);
        assert!(
            config.stages_writes(),
            "durable pwrite stages until the flush"
        );
        let written = PartitionConfig {
            ack: AckMode::Written,
            ..config.clone()
        };
        assert!(!written.stages_writes(), "written mode writes every append");
        let unstaged = PartitionConfig {
            staged_bytes_max: 0,
            ..config
        };
        assert!(!unstaged.stages_writes());
    }

    #[test]
    fn out_of_bounds_fields_are_named() {
        // Setup: one bad field at a time. Expectation: the error names that field.
        let bad = PartitionConfig {
            segment_bytes: 4096,
            ..PartitionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidConfig {
                field: "segment_bytes",
                ..
            })
        ));
        let bad = PartitionConfig {
            segment_bytes: 65_537,
            ..PartitionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidConfig {
                field: "segment_bytes",
                ..
            })
        ));
        let bad = PartitionConfig {
            index_interval_bytes: 8,
            ..PartitionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidConfig {
                field: "index_interval_bytes",
                ..
            })
        ));
        let bad = PartitionConfig {
            prepare_next_at_percent: PREPARE_NEXT_AT_PERCENT_MAX + 1,
            ..PartitionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidConfig {
                field: "prepare_next_at_percent",
                ..
            })
        ));
        let bad = PartitionConfig {
            staged_bytes_max: STAGED_BYTES_MAX_LIMIT + 1,
            ..PartitionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidConfig {
                field: "staged_bytes_max",
                ..
            })
        ));
        let bad = PartitionConfig {
            retention_ms: Some(0),
            ..PartitionConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidConfig {
                field: "retention_ms",
                ..
            })
        ));
    }
}
