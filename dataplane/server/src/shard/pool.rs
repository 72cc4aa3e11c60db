//! Starting and stopping the shards: one pinned glommio executor per shard.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dataplane_log::{Partition, PartitionId};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use schemas::plane::{ControlMessage, DataplaneReport};

use super::Shard;
use super::mesh::{MESH_CHANNEL_CAPACITY, ShardMessage};
use crate::config::DataPlaneConfig;
use crate::ingest::{PartitionOwner, ShardFlusher};
use crate::session::persistent::SessionStore;
use crate::sync::IdentityCache;

/// How often a shard applies control-plane messages: a device created over REST can connect
/// within this (plus the REST call) on every shard.
const CONTROL_POLL: Duration = Duration::from_millis(5);
/// How often sessions are checked for keep-alive and token expiry; a silent session is closed
/// between 1.5x its keep-alive and that plus this.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// How often a shard logs its stats when it serves connections.
const STATS_INTERVAL: Duration = Duration::from_mins(1);
/// How often connection states and activity go to the control plane.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a shard checks for a stop request.
const STOP_POLL: Duration = Duration::from_millis(25);
/// At stop, sessions get this long to end before the shard exits.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// At start, how long a shard waits for every other shard's partition directory.
const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(30);

/// The listening sockets of one shard (one per listener, all `SO_REUSEPORT`).
#[derive(Debug)]
pub struct ShardListeners {
    /// MQTT sockets with their TLS configuration (`None`: plain TCP).
    pub mqtt: Vec<(OwnedFd, Option<Arc<rustls::ServerConfig>>)>,
    /// AMQP sockets with their TLS configuration (`None`: plain TCP).
    pub amqp: Vec<(OwnedFd, Option<Arc<rustls::ServerConfig>>)>,
}

/// Why the data plane did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A shard's executor could not be created (io_uring unavailable, memlock too low).
    #[error(
        "shard {shard}: cannot start its executor: {reason}; if io_uring cannot lock memory, raise the memlock limit (ulimit -l)"
    )]
    Executor {
        /// Which shard.
        shard: usize,
        /// The cause.
        reason: String,
    },
    /// A shard failed while starting.
    #[error("shard {shard}: {reason}")]
    Shard {
        /// Which shard.
        shard: usize,
        /// The cause.
        reason: String,
    },
}

/// The running data plane.
#[derive(Debug)]
pub struct DataPlane {
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl DataPlane {
    /// Starts `config.shard_count` shards. `control` holds one control-plane subscription per
    /// shard, each starting with a snapshot; `listeners` one set of sockets per shard.
    /// Returns once every shard has opened its partitions and listens.
    pub fn start(
        config: DataPlaneConfig,
        control: Vec<Receiver<ControlMessage>>,
        reports: &Sender<DataplaneReport>,
        listeners: Vec<ShardListeners>,
    ) -> Result<Self, StartError> {
        let count = config.shard_count;
        assert!(count > 0, "at least one shard");
        assert_eq!(control.len(), count, "one control subscription per shard");
        assert_eq!(listeners.len(), count, "one listener set per shard");
        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));
        let mesh = MeshBuilder::<ShardMessage, _>::full(count, MESH_CHANNEL_CAPACITY);
        let (ready_sender, ready) = crossbeam_channel::bounded(count);
        let mut threads = Vec::with_capacity(count);
        for (id, (control, listeners)) in control.into_iter().zip(listeners).enumerate() {
            let placement = if config.cpus.is_empty() {
                Placement::Unbound
            } else {
                Placement::Fixed(config.cpus[id % config.cpus.len()])
            };
            let config = Arc::clone(&config);
            let stop = Arc::clone(&stop);
            let mesh = mesh.clone();
            let reports = reports.clone();
            let ready = ready_sender.clone();
            let handle = LocalExecutorBuilder::new(placement)
                .spin_before_park(config.spin_before_park)
                .name(&format!("shard-{id}"))
                .spawn(move || async move {
                    run_shard(
                        id, count, config, control, reports, listeners, mesh, stop, ready,
                    )
                    .await;
                })
                .map_err(|error| StartError::Executor {
                    shard: id,
                    reason: error.to_string(),
                })?;
            threads.push(handle);
        }
        drop(ready_sender);
        let data_plane = Self { threads, stop };
        for _ in 0..count {
            match ready.recv() {
                Ok(Ok(())) => {}
                Ok(Err((shard, reason))) => {
                    data_plane.stop();
                    return Err(StartError::Shard { shard, reason });
                }
                Err(_) => {
                    data_plane.stop();
                    return Err(StartError::Shard {
                        shard: 0,
                        reason: "a shard exited while starting".into(),
                    });
                }
            }
        }
        Ok(data_plane)
    }

    /// Stops every shard: listeners close, sessions end (acknowledged data is already
    /// committed), partitions flush; returns when all shard threads exited.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Where a hub's partitions and sessions live.
pub fn hub_dir(config: &DataPlaneConfig, hub: &str) -> PathBuf {
    config.data_dir.join("hubs").join(hub)
}

#[allow(
    clippy::too_many_arguments,
    reason = "the shard's whole start-up context"
)]
async fn run_shard(
    id: usize,
    count: usize,
    config: Arc<DataPlaneConfig>,
    control: Receiver<ControlMessage>,
    reports: Sender<DataplaneReport>,
    listeners: ShardListeners,
    mesh: MeshBuilder<ShardMessage, glommio::channels::channel_mesh::Full>,
    stop: Arc<AtomicBool>,
    ready: Sender<Result<(), (usize, String)>>,
) {
    // The control plane sends its snapshot at subscription: the first message is there.
    let mut identities = IdentityCache::default();
    while let Ok(message) = control.try_recv() {
        identities.apply(&message);
    }
    if identities.version() == 0 {
        let _ = ready.send(Err((
            id,
            "no identity snapshot from the control plane".into(),
        )));
        return;
    }
    let shard = Shard::new(id, count, Arc::clone(&config), identities, reports);
    if let Err(reason) = open_partitions(&shard).await {
        let _ = ready.send(Err((id, reason)));
        return;
    }
    let Ok((senders, mut receivers)) = mesh.join().await else {
        let _ = ready.send(Err((id, "could not join the shard mesh".into())));
        return;
    };
    shard.set_mesh(senders);
    for (_, receiver) in receivers.streams() {
        let shard = Rc::clone(&shard);
        glommio::spawn_local(async move {
            while let Some(message) = receiver.recv().await {
                shard.handle_message(message);
            }
        })
        .detach();
    }
    if let Err(reason) = exchange_directories(&shard).await {
        let _ = ready.send(Err((id, reason)));
        return;
    }

    let background = glommio::executor().create_task_queue(
        Shares::Static(50),
        Latency::NotImportant,
        "background",
    );
    // The first snapshot was applied above; deltas follow within a poll.
    every(&shard, background, CONTROL_POLL, move |shard| {
        shard.apply_control(&control);
        if let Some(applied) = &shard.config.applied_versions {
            applied.store(shard.id, shard.identities().version());
        }
    });
    every(&shard, background, REPORT_INTERVAL, Shard::send_reports);
    every(&shard, background, STATS_INTERVAL, |shard| {
        if shard.connection_count() > 0 {
            shard.log_stats();
        }
    });
    every(&shard, background, SWEEP_INTERVAL, |shard| {
        shard.sweep_sessions(super::now_ms());
    });
    every(&shard, background, config.retention_interval, |shard| {
        let now = super::now_ms();
        for partition in shard.partitions() {
            partition.enforce_retention(now);
        }
    });
    for (socket, tls) in listeners.mqtt {
        glommio::spawn_local(crate::listener::accept_mqtt(Rc::clone(&shard), socket, tls)).detach();
    }
    for (socket, tls) in listeners.amqp {
        glommio::spawn_local(crate::listener::accept_amqp(Rc::clone(&shard), socket, tls)).detach();
    }
    let _ = ready.send(Ok(()));

    while !stop.load(Ordering::Acquire) {
        glommio::timer::sleep(STOP_POLL).await;
    }
    shard.stop();
    let deadline = std::time::Instant::now() + STOP_GRACE;
    while shard.session_count() + shard.amqp_connection_count() > 0
        && std::time::Instant::now() < deadline
    {
        glommio::timer::sleep(STOP_POLL).await;
    }
    shard.send_reports();
    for partition in shard.partitions() {
        partition.flush_on_stop();
    }
}

/// Runs `action` on the shard every `interval` (first after one interval), in `queue`, for
/// the shard's life.
fn every(
    shard: &Rc<Shard>,
    queue: glommio::TaskQueueHandle,
    interval: Duration,
    action: impl Fn(&Shard) + 'static,
) {
    let shard = Rc::clone(shard);
    glommio::spawn_local_into(
        async move {
            loop {
                glommio::timer::sleep(interval).await;
                action(&shard);
            }
        },
        queue,
    )
    .map(glommio::Task::detach)
    .ok();
}

/// Sends every other shard read handles on this shard's partitions, hooks their commits to
/// the readers, and waits until every other shard's handles arrived: from then on, a reader
/// on this shard can read any partition.
async fn exchange_directories(shard: &Rc<Shard>) -> Result<(), String> {
    let owned = shard.partitions();
    for owner in &owned {
        let weak = Rc::downgrade(shard);
        let partition = owner.id();
        owner.set_commit_hook(Box::new(move || {
            if let Some(shard) = weak.upgrade() {
                shard.readers().partition_committed(partition);
            }
        }));
    }
    let entries: Vec<(u32, dataplane_log::PartitionReader)> = owned
        .iter()
        .map(|owner| (owner.id(), owner.reader()))
        .collect();
    for peer in (0..shard.count).filter(|peer| *peer != shard.id) {
        shard
            .send_to(peer, ShardMessage::Directory(entries.clone()))
            .await
            .map_err(|()| format!("shard {peer} is gone"))?;
    }
    // Start-up only: the directories arrive within milliseconds.
    let deadline = std::time::Instant::now() + DIRECTORY_TIMEOUT;
    while shard.readers().directories_heard() + 1 < shard.count {
        if std::time::Instant::now() > deadline {
            return Err("the other shards did not send their partition directories".into());
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Opens (recovering) every partition this shard owns. A partition whose recovery fails is
/// reported and left closed; its devices are refused until an operator repairs it.
async fn open_partitions(shard: &Rc<Shard>) -> Result<(), String> {
    let (hub, partition_count) = {
        let identities = shard.identities();
        (
            identities.hub_name().to_owned(),
            identities.partition_count(),
        )
    };
    let hub_dir = hub_dir(&shard.config, &hub);
    let sessions_dir = hub_dir.join("sessions");
    std::fs::create_dir_all(&sessions_dir)
        .map_err(|error| format!("{}: {error}", sessions_dir.display()))?;
    let flusher = shard.config.durable().then(ShardFlusher::new);
    let preparer = Rc::new(
        crate::ingest::SegmentPreparer::start(shard.id)
            .map_err(|error| format!("starting the segment preparer: {error}"))?,
    );
    if let Some(flusher) = &flusher {
        glommio::spawn_local(Rc::clone(flusher).run()).detach();
    }
    for partition in 0..partition_count {
        if super::placement::shard_of(partition, shard.count) != shard.id {
            continue;
        }
        let dir = hub_dir.join("events").join(partition.to_string());
        let log_config = shard.config.log.clone();
        let opened = glommio::executor()
            .spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                Partition::open(&dir, PartitionId(partition), log_config)
                    .map_err(std::io::Error::other)
            })
            .await;
        match opened {
            Ok((log, report)) => {
                if !report.is_clean() {
                    tracing::warn!(partition, ?report, "partition recovered from a torn tail");
                }
                let owner = PartitionOwner::new(
                    partition,
                    log,
                    flusher.as_ref().map(|flusher| flusher.signal()),
                    Rc::clone(&preparer),
                );
                owner.prepare_next_segment();
                if let Some(flusher) = &flusher {
                    flusher.add(Rc::clone(&owner));
                }
                let store = Rc::new(SessionStore::load(
                    sessions_dir.join(format!("{partition}.json")),
                ));
                shard.add_partition(owner, store);
            }
            Err(error) => {
                tracing::error!(partition, %error, "partition did not open; its devices are refused until it is repaired");
            }
        }
    }
    Ok(())
}
