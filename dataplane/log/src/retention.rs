//! Retention: whole sealed segments are deleted, oldest first, by age and by total size.
//!
//! A segment goes when every record in it is older than `retention_ms` (its newest record's
//! enqueued time is before `now_ms - retention_ms`), or while the partition's files exceed
//! `retention_bytes`. The active segment is never deleted, nor a segment holding records that
//! are not committed yet. The segment list (and the earliest position) is republished before
//! the files are unlinked; readers that still hold a deleted segment keep it mapped until they
//! drop it.

use std::fs;
use std::io;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::reader::{CommittedPosition, Position};

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes of segment and index files deleted.
    pub bytes_deleted: u64,
    /// The earliest position afterwards.
    pub earliest: Position,
}

impl Partition {
    /// Deletes the sealed segments that retention allows, oldest first. Unlinking files is
    /// blocking I/O: run it from a background task. A failed unlink is reported
    /// ([`Error::DeleteFailed`], recoverable) after the segment has already left the readable
    /// range; the file is picked up again at the next open.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport> {
        let config = self.config().clone();
        let segments = self.segments();
        let committed_end = self.committed().end.offset.0;
        let active = Arc::clone(self.active_segment());
        assert!(
            segments.last().is_some_and(|s| Arc::ptr_eq(s, &active)),
            "the active segment is last"
        );
        let mut total_bytes: u64 = segments.iter().map(|s| s.file_bytes()).sum();
        let mut deleted = 0usize;
        let mut bytes_deleted = 0u64;
        for segment in segments.iter() {
            if Arc::ptr_eq(segment, &active) {
                break;
            }
            let Some(sealed_bytes) = segment.sealed_bytes() else {
                break;
            };
            if segment.base_offset().0 + u64::from(sealed_bytes) > committed_end {
                break;
            }
            let too_old = config.retention_ms.is_some_and(|retention_ms| {
                let newest = segment.last_enqueued_ms();
                newest != i64::MIN && newest.saturating_add(retention_ms as i64) < now_ms
            });
            let too_big = config
                .retention_bytes
                .is_some_and(|retention_bytes| total_bytes > retention_bytes);
            if !too_old && !too_big {
                break;
            }
            deleted += 1;
            total_bytes -= segment.file_bytes();
            bytes_deleted += segment.file_bytes();
        }
        if deleted == 0 {
            return Ok(RetentionReport {
                segments_deleted: 0,
                bytes_deleted: 0,
                earliest: self.reader().earliest(),
            });
        }
        assert!(deleted < segments.len(), "the active segment stays");
        let kept: Vec<_> = segments[deleted..].to_vec();
        let first = &kept[0];
        let earliest = Position {
            offset: first.base_offset(),
            sequence: first.base_sequence(),
        };
        // Earliest first: a reader that finds a segment missing from the list must already see
        // the new earliest position to restart from.
        self.shared.earliest.store(CommittedPosition {
            end: earliest,
            last: None,
        });
        self.shared.segments.store(Arc::new(kept));
        self.stats.segments_deleted += deleted as u64;
        let mut first_error = None;
        for segment in &segments[..deleted] {
            for path in [segment.path(), segment.index_path()] {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => {
                        first_error.get_or_insert(Error::DeleteFailed {
                            path: path.to_path_buf(),
                            source: Arc::new(error),
                        });
                    }
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(RetentionReport {
                segments_deleted: deleted,
                bytes_deleted,
                earliest,
            }),
        }
    }
}
