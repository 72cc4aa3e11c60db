//! A full filesystem poisons the partition with an error naming ENOSPC, without a panic;
//! committed records stay readable, and the partition reopens.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::{OwnedInput, append_owned, read_all};
use dataplane_log::{AckMode, Error, Partition, PartitionConfig, PartitionId, WritePath};

/// A 2 MiB tmpfs mounted on a temporary directory, unmounted on drop.
struct SmallTmpfs {
    _dir: tempfile::TempDir,
    mount_point: PathBuf,
}

impl SmallTmpfs {
    fn mount() -> Result<SmallTmpfs, std::io::Error> {
        let dir = tempfile::tempdir()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("path without NUL");
        let options = c"size=2m";
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SmallTmpfs {
            mount_point: dir.path().to_path_buf(),
            _dir: dir,
        })
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let target =
            CString::new(self.mount_point.as_os_str().as_bytes()).expect("path without NUL");
        // SAFETY: a valid NUL-terminated path; MNT_DETACH never blocks on busy files.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn filling_the_filesystem_poisons_with_enospc_and_committed_records_read_back() {
    // Setup: a 2 MiB tmpfs (skipped, with a message, where mounting is not permitted); 256 KiB
    // segments; batches appended and flushed until an append fails; segment preparation tried
    // off the append path too.
    // Expectation: preparing a segment fails with NoSpace and leaves the partition usable; the
    // append that needs the missing segment fails with NoSpace (naming ENOSPC) and poisons the
    // partition; later appends are refused with Poisoned; every flushed record reads back; the
    // partition reopens on the full filesystem with every record.
    let tmpfs = match SmallTmpfs::mount() {
        Ok(tmpfs) => tmpfs,
        Err(error) => {
            println!(
                "SKIPPED filling_the_filesystem_poisons_with_enospc: cannot mount tmpfs ({error})"
            );
            return;
        }
    };
    let dir = tmpfs.path().join("partition");
    let config = PartitionConfig {
        segment_bytes: 256 * 1024,
        index_interval_bytes: 1024,
        write_path: WritePath::Pwrite,
        ack: AckMode::Durable,
        retention_ms: None,
        retention_bytes: None,
        prefault: true,
        zero_fill: true,
        prepare_next_at_percent: 50,
        staged_bytes_max: 1 << 20,
    };
    let (mut partition, _) = Partition::open(&dir, PartitionId(0), config.clone()).expect("open");
    let mut flushed = 0u64;
    let mut prepare_failed = false;
    let failure = loop {
        let batch: Vec<OwnedInput> = (flushed..flushed + 16)
            .map(|s| OwnedInput::numbered(s, 2000))
            .collect();
        match append_owned(&mut partition, &batch, flushed as i64) {
            Ok(_) => {}
            Err(error) => break error,
        }
        partition
            .flush_now()
            .expect("flush before the disk is full");
        flushed += 16;
        assert!(flushed < 10_000, "the filesystem never filled up");
        if let Some(prep) = partition.next_segment_request() {
            match prep.prepare() {
                Ok(prepared) => partition.install_prepared(prepared).expect("install"),
                Err(error) => {
                    assert!(matches!(error, Error::NoSpace { .. }), "{error}");
                    assert!(
                        !partition.is_poisoned(),
                        "a failed preparation off the append path only reports"
                    );
                    prepare_failed = true;
                }
            }
        }
    };
    assert!(
        prepare_failed,
        "the off-path preparation met the full disk first"
    );
    assert!(matches!(failure, Error::NoSpace { .. }), "{failure}");
    assert!(failure.to_string().contains("ENOSPC"), "{failure}");
    assert!(partition.is_poisoned());
    assert!(partition.poison_cause().is_some_and(Error::is_no_space));
    let refused = append_owned(&mut partition, &[OwnedInput::numbered(flushed, 10)], 0)
        .expect_err("poisoned");
    assert!(
        matches!(refused, Error::Poisoned { .. }) && refused.is_no_space(),
        "{refused}"
    );
    let records = read_all(&partition.reader());
    assert_eq!(records.len() as u64, flushed);
    for (i, (_, record)) in records.iter().enumerate() {
        assert_eq!(*record, OwnedInput::numbered(i as u64, 2000));
    }
    drop(partition);
    let (partition, report) =
        Partition::open(&dir, PartitionId(0), config).expect("reopen on a full disk");
    assert_eq!(report.end.sequence.0, flushed);
    assert_eq!(read_all(&partition.reader()).len() as u64, flushed);
}
