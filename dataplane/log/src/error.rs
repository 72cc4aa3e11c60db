//! The one error type of the partition log.
//!
//! Variants are named after the failure. Each says whether it is *recoverable* (the partition
//! keeps working, the caller may retry or change its request) or *terminal* (for appends: the
//! partition is poisoned and refuses every later append; for open: the partition cannot start
//! until an operator acts). Reads go on after a poison.
//!
//! I/O sources are held in an `Arc` so that the error can be cloned: the partition keeps the
//! error that poisoned it and hands a copy to every later caller.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Offset;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a partition log.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`PartitionConfig`](crate::PartitionConfig) field is out of bounds. Terminal for this
    /// open: fix the configuration.
    #[error("invalid partition config: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Another process (or another `Partition` in this one) holds the directory's lock file.
    /// Terminal for this open; recoverable once the other owner exits.
    #[error("partition directory {path} is locked by another owner")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// Creating, listing, opening, mapping or reading a file while opening the partition (or
    /// opening or refreshing a [`Follower`](crate::Follower)) failed. Terminal for this open:
    /// the operator sees the path and the OS error; a follower's refresh may be retried.
    #[error("cannot open {path}: {source}")]
    OpenFailed {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },

    /// The filesystem is full (`ENOSPC` or `EDQUOT`) while writing, preallocating or flushing.
    /// Terminal for appends (the partition is poisoned); committed records stay readable.
    #[error("no space left on device (ENOSPC) for {path}: {source}")]
    NoSpace {
        /// The file being written or preallocated.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },

    /// Writing records into a segment file failed with an I/O error other than `ENOSPC`.
    /// Terminal for appends (poisoned).
    #[error("write to {path} at byte {position} failed: {source}")]
    WriteFailed {
        /// The segment file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },

    /// Creating, preallocating, mapping or renaming a segment or index file failed. Recoverable
    /// when returned by [`SegmentPrep::prepare`](crate::SegmentPrep::prepare) (retry later);
    /// terminal (poisoned) when it happens during a roll on the append path.
    #[error("cannot prepare segment file {path}: {source}")]
    SegmentPrepareFailed {
        /// The file being created.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },

    /// `fdatasync` failed. Terminal (poisoned): after a failed flush the kernel may have dropped
    /// the dirty pages, so no later flush may claim that those records are durable.
    #[error("fdatasync of {path} failed: {source}")]
    FlushFailed {
        /// The file (or the first file of the request) that failed to sync.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },

    /// A record failed validation when read (bad length, checksum, or fields that contradict its
    /// position). Terminal for the cursor that met it; the partition's appends are unaffected.
    #[error("corrupt record in {path} at byte {position}: {reason}")]
    CorruptRecord {
        /// The segment file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What is wrong.
        reason: Corruption,
    },

    /// Recovery found a bad record that is not a torn tail: valid records follow it, or it lies
    /// in a sealed segment. Terminal for open: Shoal never drops such data silently; the operator
    /// decides (restore, or truncate by hand at the reported position).
    #[error(
        "interior corruption in {path} at byte {position}: {reason} ({}) ; refusing to open",
        match .valid_record_after { Some(p) => format!("a valid record follows at byte {p}"),
                                     None => "in a sealed segment".to_owned() }
    )]
    InteriorCorruption {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the bad record in the file.
        position: u64,
        /// What is wrong with it.
        reason: Corruption,
        /// File position of a valid record found after the bad one, if that is why.
        valid_record_after: Option<u64>,
    },

    /// The partition directory holds no segment yet: no writer ever opened it. Recoverable for a
    /// [`Follower`](crate::Follower): open it again later.
    #[error("no segment in {path} yet")]
    NoSegments {
        /// The directory.
        path: PathBuf,
    },

    /// A segment file header is unreadable or contradicts its file name or partition. Terminal
    /// for open.
    #[error("corrupt segment file {path}: {reason}")]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },

    /// Consecutive segments do not chain: a segment does not start where the previous one ends.
    /// Terminal for open.
    #[error(
        "segment {path} starts at offset {found_offset} sequence {found_sequence}, but the \
         previous segment ends at offset {expected_offset} sequence {expected_sequence}"
    )]
    SegmentGap {
        /// The later segment file.
        path: PathBuf,
        /// Where the previous segment ends.
        expected_offset: u64,
        /// The sequence number after the previous segment's last record.
        expected_sequence: u64,
        /// Where this segment says it starts.
        found_offset: u64,
        /// The first sequence number this segment declares.
        found_sequence: u64,
    },

    /// A record body is not a valid `shoal.log.Record` flatbuffer. Recoverable for the caller
    /// (skip or stop); it means the body was written by something else or damaged in place.
    #[error("record at offset {offset} has an invalid body: {detail}")]
    InvalidBody {
        /// The record's offset.
        offset: Offset,
        /// What the verifier or the payload lookup found.
        detail: BodyError,
    },

    /// One record does not fit in a segment. Recoverable: nothing was appended.
    #[error("record of {record_bytes} bytes exceeds the maximum of {record_bytes_max}")]
    RecordTooLarge {
        /// Encoded size of the record, header included.
        record_bytes: u64,
        /// The largest record a segment takes.
        record_bytes_max: u64,
    },

    /// The batch does not fit in one segment (a batch never spans segments). Recoverable: nothing
    /// was appended; split the batch.
    #[error("batch of {batch_bytes} bytes exceeds the maximum of {batch_bytes_max}")]
    BatchTooLarge {
        /// Encoded size of the batch.
        batch_bytes: u64,
        /// The largest batch a segment takes.
        batch_bytes_max: u64,
    },

    /// An append of zero records. Recoverable: nothing happened.
    #[error("empty batch")]
    EmptyBatch,

    /// The partition refused an append because an earlier write, preallocation or flush failed.
    /// Terminal until the partition is reopened (recovery decides what survived).
    #[error("partition is poisoned: {cause}")]
    Poisoned {
        /// The failure that poisoned it.
        #[source]
        cause: Box<Error>,
    },

    /// Deleting a segment for retention failed. Recoverable: the segment is already out of the
    /// readable range; the file stays on disk and is picked up again at the next open.
    #[error("cannot delete {path}: {source}")]
    DeleteFailed {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
}

/// Why a record failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The header's length is below the minimum record or runs past the end of the segment.
    #[error("length {length} out of bounds")]
    LengthOutOfBounds {
        /// The length found in the header.
        length: u32,
    },
    /// CRC32C mismatch.
    #[error("checksum {stored:#010x} does not match computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// The header's offset is not the record's position.
    #[error("header says offset {found}, the record is at offset {expected}")]
    OffsetMismatch {
        /// Offset of the position.
        expected: u64,
        /// Offset in the header.
        found: u64,
    },
    /// Sequence numbers are not contiguous.
    #[error("header says sequence {found}, expected {expected}")]
    SequenceMismatch {
        /// The next sequence number.
        expected: u64,
        /// Sequence in the header.
        found: u64,
    },
    /// Enqueued time went backwards (the writer never lets it).
    #[error("enqueued time {found} ms is before the previous record's {previous} ms")]
    TimeRegression {
        /// The previous record's time.
        previous: i64,
        /// This record's time.
        found: i64,
    },
    /// Flags or reserved bits this version does not know.
    #[error("unknown flags {flags:#x} / reserved {reserved:#x}")]
    UnknownFlags {
        /// The flags field.
        flags: u32,
        /// The reserved field.
        reserved: u32,
    },
    /// Fewer bytes than a record header remain, and they are not all zero.
    #[error("partial header")]
    PartialHeader,
}

/// Why a record body could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The flatbuffers verifier rejected the body.
    #[error("{0}")]
    Verifier(#[from] flatbuffers::InvalidFlatbuffer),
    /// The payload field is missing or out of bounds.
    #[error("payload field missing or out of bounds")]
    Payload,
}

impl Error {
    /// True when this error poisoned (or would poison) the partition for appends.
    pub fn is_terminal_for_appends(&self) -> bool {
        matches!(
            self,
            Error::NoSpace { .. }
                | Error::WriteFailed { .. }
                | Error::FlushFailed { .. }
                | Error::SegmentPrepareFailed { .. }
                | Error::Poisoned { .. }
        )
    }

    /// True when the root cause is a full filesystem.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::NoSpace { .. } => true,
            Error::Poisoned { cause } => cause.is_no_space(),
            _ => false,
        }
    }
}

/// True for the OS errors that mean "the filesystem is full".
pub(crate) fn is_no_space(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Maps a failed record write to [`Error::NoSpace`] or [`Error::WriteFailed`].
pub(crate) fn write_failed(path: PathBuf, position: u64, error: io::Error) -> Error {
    if is_no_space(&error) {
        Error::NoSpace {
            path,
            source: Arc::new(error),
        }
    } else {
        Error::WriteFailed {
            path,
            position,
            source: Arc::new(error),
        }
    }
}

/// Maps a failed file creation or preallocation to [`Error::NoSpace`] or
/// [`Error::SegmentPrepareFailed`].
pub(crate) fn prepare_failed(path: PathBuf, error: io::Error) -> Error {
    if is_no_space(&error) {
        Error::NoSpace {
            path,
            source: Arc::new(error),
        }
    } else {
        Error::SegmentPrepareFailed {
            path,
            source: Arc::new(error),
        }
    }
}

/// Maps a failed `fdatasync` to [`Error::NoSpace`] or [`Error::FlushFailed`].
pub(crate) fn flush_failed(path: PathBuf, error: io::Error) -> Error {
    if is_no_space(&error) {
        Error::NoSpace {
            path,
            source: Arc::new(error),
        }
    } else {
        Error::FlushFailed {
            path,
            source: Arc::new(error),
        }
    }
}

/// Wraps an error met while opening.
pub(crate) fn open_failed(path: PathBuf, error: io::Error) -> Error {
    Error::OpenFailed {
        path,
        source: Arc::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_maps_to_no_space_and_names_it() {
        // Setup: a raw ENOSPC from a write. Expectation: the NoSpace variant, whose message
        // names ENOSPC so that an operator reading a log line knows what to do.
        let error = write_failed(
            PathBuf::from("/x"),
            8,
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(error, Error::NoSpace { .. }));
        assert!(error.is_no_space());
        assert!(error.to_string().contains("ENOSPC"));
        let poisoned = Error::Poisoned {
            cause: Box::new(error),
        };
        assert!(poisoned.is_no_space());
        assert!(poisoned.is_terminal_for_appends());
    }

    #[test]
    fn other_write_errors_map_to_write_failed() {
        // Setup: EIO from a write. Expectation: WriteFailed with the position.
        let error = write_failed(
            PathBuf::from("/x"),
            8,
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(matches!(error, Error::WriteFailed { position: 8, .. }));
        assert!(!error.is_no_space());
    }
}
