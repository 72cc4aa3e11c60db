//! Publishes the registry to the data plane, and applies what the data plane reports.
//!
//! Every shard subscribes once and receives a full [`HubSnapshot`] followed by versioned
//! deltas. A change is published by re-reading the store under the publisher's lock after the
//! write committed, so the last message a shard sees for an identity always matches the store,
//! whatever order concurrent REST calls finished in.
//!
//! The subscriber channels are unbounded on purpose: their producers are registry writes,
//! which the store already serialises, and a shard drains its channel every few milliseconds.
//! A bounded channel would make a stalled shard block REST calls instead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use schemas::plane::{
    ConnectionEvent, ControlMessage, Credentials, DataplaneReport, HubSnapshot, Identity,
    IdentityKey, PolicyGrant,
};

use crate::registry::hub::HubRecord;
use crate::registry::model::{Authentication, DeviceRecord, ModuleRecord, Status};
use crate::store::{RuntimeUpdate, Store, StoreResult};

struct State {
    version: u64,
    hub: HubRecord,
    identities: BTreeMap<IdentityKey, Identity>,
    subscribers: Vec<Sender<ControlMessage>>,
}

/// Fans registry changes out to every subscribed shard.
pub struct Publisher {
    store: Arc<dyn Store>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Publisher").finish_non_exhaustive()
    }
}

fn credentials(authentication: &Authentication) -> Credentials {
    match authentication {
        Authentication::Sas {
            primary_key,
            secondary_key,
        } => Credentials::Sas {
            // Keys were validated as base64 when written; an undecodable one cannot sign.
            primary: dataplane_wire::sas::decode_key(primary_key).unwrap_or_default(),
            secondary: dataplane_wire::sas::decode_key(secondary_key).unwrap_or_default(),
        },
        Authentication::SelfSigned {
            primary_thumbprint,
            secondary_thumbprint,
        } => Credentials::X509Thumbprint {
            primary: primary_thumbprint.clone(),
            secondary: secondary_thumbprint.clone(),
        },
        Authentication::CertificateAuthority => Credentials::CertificateAuthority,
        Authentication::None => Credentials::None,
    }
}

fn device_identity(device: &DeviceRecord) -> Identity {
    Identity {
        key: IdentityKey {
            device_id: device.device_id.clone(),
            module_id: None,
        },
        enabled: device.status == Status::Enabled,
        generation_id: device.generation_id.clone(),
        credentials: credentials(&device.authentication),
    }
}

fn module_identity(module: &ModuleRecord, device_enabled: bool) -> Identity {
    Identity {
        key: IdentityKey {
            device_id: module.device_id.clone(),
            module_id: Some(module.module_id.clone()),
        },
        // Modules have no status of their own; a disabled device disables its modules.
        enabled: device_enabled,
        generation_id: module.generation_id.clone(),
        credentials: credentials(&module.authentication),
    }
}

fn policy_grants(hub: &HubRecord) -> Vec<PolicyGrant> {
    hub.policies
        .iter()
        .map(|policy| PolicyGrant {
            name: policy.name.clone(),
            primary_key: policy.primary_key.clone(),
            secondary_key: policy.secondary_key.clone(),
            device_connect: policy.rights.device_connect,
            service_connect: policy.rights.service_connect,
        })
        .collect()
}

impl State {
    fn snapshot(&self) -> HubSnapshot {
        HubSnapshot {
            version: self.version,
            hub_name: self.hub.name.clone(),
            partition_count: self.hub.partition_count,
            identities: self.identities.values().cloned().collect(),
            policies: policy_grants(&self.hub),
            consumer_groups: self.hub.consumer_groups.clone(),
        }
    }

    fn broadcast(&mut self, message: &ControlMessage) {
        self.subscribers
            .retain(|subscriber| subscriber.send(message.clone()).is_ok());
    }

    fn upsert(&mut self, identity: Identity) {
        if self.identities.get(&identity.key) == Some(&identity) {
            return;
        }
        self.version += 1;
        self.identities
            .insert(identity.key.clone(), identity.clone());
        let message = ControlMessage::UpsertIdentity {
            version: self.version,
            identity,
        };
        self.broadcast(&message);
    }

    fn remove(&mut self, key: &IdentityKey) {
        if self.identities.remove(key).is_none() {
            return;
        }
        if key.module_id.is_none() {
            self.identities
                .retain(|other, _| other.device_id != key.device_id);
        }
        self.version += 1;
        let message = ControlMessage::RemoveIdentity {
            version: self.version,
            key: key.clone(),
        };
        self.broadcast(&message);
    }
}

impl Publisher {
    /// Loads every identity of `hub` from the store.
    pub fn load(store: Arc<dyn Store>, hub: HubRecord) -> StoreResult<Self> {
        let (devices, modules) = store.identities(&hub.name)?;
        let mut identities = BTreeMap::new();
        let mut enabled = std::collections::HashMap::new();
        for device in &devices {
            let identity = device_identity(device);
            enabled.insert(device.device_id.clone(), identity.enabled);
            identities.insert(identity.key.clone(), identity);
        }
        for module in &modules {
            let device_enabled = enabled.get(&module.device_id).copied().unwrap_or(false);
            let identity = module_identity(module, device_enabled);
            identities.insert(identity.key.clone(), identity);
        }
        Ok(Self {
            store,
            state: Mutex::new(State {
                version: 1,
                hub,
                identities,
                subscribers: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new subscription: the current snapshot first, then every later change.
    pub fn subscribe(&self) -> Receiver<ControlMessage> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mut state = self.lock();
        let snapshot = ControlMessage::Snapshot(Arc::new(state.snapshot()));
        // The receiver is alive, so this send cannot fail.
        let _ = sender.send(snapshot);
        state.subscribers.push(sender);
        receiver
    }

    /// The version of the last change published.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// The current snapshot (for tools and tests).
    pub fn snapshot(&self) -> HubSnapshot {
        self.lock().snapshot()
    }

    /// Publishes the stored state of a device and its modules after a write.
    pub fn refresh_device(&self, device_id: &str) -> StoreResult<()> {
        let mut state = self.lock();
        let hub = state.hub.name.clone();
        let key = IdentityKey {
            device_id: device_id.to_owned(),
            module_id: None,
        };
        let Some((device, _)) = self.store.device(&hub, device_id)? else {
            state.remove(&key);
            return Ok(());
        };
        let identity = device_identity(&device);
        let enabled = identity.enabled;
        state.upsert(identity);
        for (module, _) in self.store.modules(&hub, device_id)? {
            state.upsert(module_identity(&module, enabled));
        }
        Ok(())
    }

    /// Publishes a hub's new consumer groups after a write.
    pub fn set_consumer_groups(&self, groups: Vec<String>) {
        let mut state = self.lock();
        if state.hub.consumer_groups == groups {
            return;
        }
        state.version += 1;
        state.hub.consumer_groups.clone_from(&groups);
        let message = ControlMessage::ConsumerGroups {
            version: state.version,
            groups,
        };
        state.broadcast(&message);
    }

    /// Publishes the stored state of one module after a write.
    pub fn refresh_module(&self, device_id: &str, module_id: &str) -> StoreResult<()> {
        let mut state = self.lock();
        let hub = state.hub.name.clone();
        let device = self.store.device(&hub, device_id)?;
        let module = self.store.module(&hub, device_id, module_id)?;
        match (device, module) {
            (Some((device, _)), Some((module, _))) => {
                state.upsert(module_identity(&module, device.status == Status::Enabled));
            }
            _ => state.remove(&IdentityKey {
                device_id: device_id.to_owned(),
                module_id: Some(module_id.to_owned()),
            }),
        }
        Ok(())
    }
}

/// The thread that applies data-plane reports to the store.
#[derive(Debug)]
pub struct ReportSink {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ReportSink {
    /// Applies what is still queued, then ends the thread.
    pub fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.thread.join();
    }
}

/// How often the sink looks for a stop request while no report arrives.
const REPORT_SINK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Applies data-plane reports to the store on a thread of its own, until stopped (or every
/// sender is gone).
pub fn spawn_report_sink(
    store: Arc<dyn Store>,
    hub: String,
    reports: Receiver<DataplaneReport>,
) -> std::io::Result<ReportSink> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("report-sink".into())
        .spawn(move || {
            loop {
                match reports.recv_timeout(REPORT_SINK_POLL) {
                    Ok(DataplaneReport::Connections(events)) => {
                        let updates: Vec<RuntimeUpdate> =
                            events.iter().map(runtime_update).collect();
                        if let Err(error) = store.record_runtime(&hub, &updates) {
                            tracing::warn!(%error, "could not record connection states");
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if stopping.load(std::sync::atomic::Ordering::Acquire) {
                            return;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
    Ok(ReportSink { stop, thread })
}

fn runtime_update(event: &ConnectionEvent) -> RuntimeUpdate {
    RuntimeUpdate {
        device_id: event.key.device_id.clone(),
        module_id: event.key.module_id.clone(),
        connected: event.connected,
        changed_ms: event.at_ms,
        last_activity_ms: Some(event.at_ms),
    }
}
