//! One thread per shard that prepares the next segments of the shard's partitions, one at a
//! time, at the lowest CPU priority.
//!
//! A preparation writes a whole segment of zeros (see `dataplane/log/DECISIONS.md` §2): with
//! four partitions at equal rates, four of them came due in the same second. Run together, and
//! on glommio's blocking pool, where the flusher's slow rounds also queue, they stalled
//! acknowledgements and publish-to-consume latency for 200-600 ms at 100k msgs/s
//! (`shoal-perf run -s e2e`). Here they run one after another on a thread of their own, each
//! keeping at most a few 128 KiB chunks in the disk's queue, and on the shard's core they
//! take only the time the shard leaves idle.

use std::time::Duration;

use dataplane_log::{PreparedSegment, Result, SegmentPrep};

/// How often a waiting partition looks whether its preparation finished; a preparation takes
/// 100 ms or more, so this adds nothing that matters.
const PREPARATION_POLL: Duration = Duration::from_millis(10);

/// A request and where its outcome goes.
struct Job {
    request: SegmentPrep,
    done: crossbeam_channel::Sender<Result<PreparedSegment>>,
}

/// The shard's segment preparer. Its thread ends when the shard drops this.
pub struct SegmentPreparer {
    jobs: crossbeam_channel::Sender<Job>,
}

impl SegmentPreparer {
    /// Starts the preparing thread of shard `shard_id`.
    pub fn start(shard_id: usize) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        std::thread::Builder::new()
            .name(format!("segment-prep-{shard_id}"))
            .spawn(move || {
                lower_this_threads_priority();
                for job in queue {
                    // A partition that stopped waiting drops the receiver; dropping the
                    // prepared segment then deletes its files.
                    let _ = job.done.send(job.request.prepare());
                }
            })?;
        Ok(Self { jobs })
    }

    /// Prepares `request` after the preparations queued before it, without blocking the
    /// shard.
    pub async fn prepare(&self, request: SegmentPrep) -> Result<PreparedSegment> {
        let (done, outcome) = crossbeam_channel::bounded(1);
        let gone = || dataplane_log::Error::SegmentPrepareFailed {
            path: "segment preparer".into(),
            source: std::sync::Arc::new(std::io::Error::other("the preparing thread is gone")),
        };
        self.jobs.send(Job { request, done }).map_err(|_| gone())?;
        loop {
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    glommio::timer::sleep(PREPARATION_POLL).await;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Err(gone()),
            }
        }
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19). Best effort: without it the
/// preparation only competes harder with the shard on its core.
fn lower_this_threads_priority() {
    // SAFETY: gettid takes no arguments; setpriority only reads its integer arguments.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}
