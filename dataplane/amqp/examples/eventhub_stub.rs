//! A test-only Event Hubs endpoint over plain TCP, built on the sans-IO `Connection`, so the
//! unmodified `azure-eventhub` client can be run against the state machine before the data
//! plane exists (`UseDevelopmentEmulator=true` connection strings).
//!
//! It serves one event hub with an in-memory partition set of generated events, validates
//! CBS put-tokens (HMAC-SHA256 with the raw key bytes over `sr\nse`), answers `$management`
//! READs, and serves partition receivers with selector filters, epochs (a higher epoch
//! steals the partition with `amqp:link:stolen`) and runtime metrics.
//!
//! ```text
//! eventhub_stub [--port P] [--hub NAME] [--partitions N] [--events N]
//!               [--key-name NAME] [--key KEY]
//! ```
//! Prints `LISTENING <port>` once ready. One thread per connection; std only.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dataplane_amqp::address::{NodeAddress, PartitionAddress, StartPosition};
use dataplane_amqp::event::{
    EventFields, EventProperties, IotHubAnnotations, MessageIdRef, RuntimeMetrics,
};
use dataplane_amqp::management::{EventHubProperties, PartitionProperties, PutToken, ReadRequest};
use dataplane_amqp::sasl::SaslOutcome;
use dataplane_amqp::{Condition, Config, Connection, Event, LinkId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

struct Options {
    port: u16,
    hub: String,
    partitions: usize,
    events: usize,
    key_name: String,
    key: String,
}

fn parse_options() -> Options {
    let mut options = Options {
        port: 0,
        hub: "hub".into(),
        partitions: 4,
        events: 5,
        key_name: "RootManageSharedAccessKey".into(),
        key: "c2VjcmV0LWtleS1mb3ItdGVzdHM=".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--port" => options.port = value.parse().expect("--port takes a number"),
            "--hub" => options.hub = value,
            "--partitions" => options.partitions = value.parse().expect("--partitions"),
            "--events" => options.events = value.parse().expect("--events"),
            "--key-name" => options.key_name = value,
            "--key" => options.key = value,
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// One generated event.
struct StoredEvent {
    sequence_number: i64,
    offset: i64,
    enqueued_time_ms: i64,
    device_id: String,
    message_id: String,
    body: Vec<u8>,
}

/// Which receiver holds a partition of a consumer group, and with which epoch.
struct Owner {
    epoch: i64,
    stolen: Arc<AtomicBool>,
}

struct Hub {
    options: Options,
    created_at_ms: i64,
    partitions: Vec<Vec<StoredEvent>>,
    owners: Mutex<HashMap<(String, String), Owner>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

impl Hub {
    fn new(options: Options) -> Self {
        let base = now_ms() - 60_000;
        let partitions = (0..options.partitions)
            .map(|p| {
                let mut offset = 0;
                (0..options.events)
                    .map(|i| {
                        let body = format!("{{\"partition\":{p},\"index\":{i}}}").into_bytes();
                        let event = StoredEvent {
                            sequence_number: i as i64,
                            offset,
                            enqueued_time_ms: base + (i as i64) * 1000,
                            device_id: format!("dev{p}"),
                            message_id: format!("msg-{p}-{i}"),
                            body,
                        };
                        offset += 512;
                        event
                    })
                    .collect()
            })
            .collect();
        Self {
            options,
            created_at_ms: base,
            partitions,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Checks an Event Hubs SAS token: the raw key string's bytes sign `sr\nse`.
    fn token_valid(&self, put: &PutToken) -> bool {
        let Some(fields) = put.token.strip_prefix("SharedAccessSignature ") else {
            return false;
        };
        let mut sr = None;
        let mut sig = None;
        let mut se = None;
        let mut skn = None;
        for pair in fields.split('&') {
            match pair.split_once('=') {
                Some(("sr", v)) => sr = Some(v),
                Some(("sig", v)) => sig = Some(v),
                Some(("se", v)) => se = Some(v),
                Some(("skn", v)) => skn = Some(v),
                _ => {}
            }
        }
        let (Some(sr), Some(sig), Some(se)) = (sr, sig, se) else {
            return false;
        };
        if skn != Some(self.options.key_name.as_str()) {
            return false;
        }
        let Ok(expiry) = se.parse::<i64>() else {
            return false;
        };
        if expiry * 1000 < now_ms() {
            return false;
        }
        let resource = percent_encoding::percent_decode_str(&sr.replace('+', " "))
            .decode_utf8_lossy()
            .to_string();
        if !resource.eq_ignore_ascii_case(&put.audience) {
            return false;
        }
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(
            percent_encoding::percent_decode_str(sig)
                .decode_utf8_lossy()
                .as_bytes(),
        ) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(self.options.key.as_bytes()).expect("any key");
        mac.update(format!("{sr}\n{se}").as_bytes());
        mac.verify_slice(&signature).is_ok()
    }

    fn partition(&self, id: &str) -> Option<&Vec<StoredEvent>> {
        id.parse::<usize>()
            .ok()
            .and_then(|p| self.partitions.get(p))
    }
}

/// A partition receiver link being served.
struct Reader {
    partition: usize,
    next: usize,
    runtime_metric: bool,
    stolen: Arc<AtomicBool>,
}

fn start_index(events: &[StoredEvent], position: Option<&StartPosition>) -> usize {
    let first =
        |pred: &dyn Fn(&StoredEvent) -> bool| events.iter().position(pred).unwrap_or(events.len());
    match position {
        None | Some(StartPosition::Latest) => events.len(),
        Some(StartPosition::Start) => 0,
        Some(StartPosition::Offset { offset, inclusive }) => {
            let offset: i64 = offset.parse().unwrap_or(i64::MAX);
            first(&|e| {
                if *inclusive {
                    e.offset >= offset
                } else {
                    e.offset > offset
                }
            })
        }
        Some(StartPosition::SequenceNumber {
            sequence_number,
            inclusive,
        }) => first(&|e| {
            if *inclusive {
                e.sequence_number >= *sequence_number
            } else {
                e.sequence_number > *sequence_number
            }
        }),
        Some(StartPosition::EnqueuedTime {
            milliseconds,
            inclusive,
        }) => first(&|e| {
            if *inclusive {
                e.enqueued_time_ms >= *milliseconds
            } else {
                e.enqueued_time_ms > *milliseconds
            }
        }),
    }
}

fn serve(hub: &Hub, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let config = Config {
        idle_timeout_ms: Some(60_000),
        ..Config::default()
    };
    let mut connection = Connection::new(config, Instant::now());
    let mut authorized = false;
    let mut readers: HashMap<LinkId, Reader> = HashMap::new();
    let mut input = vec![0; 64 * 1024];
    let mut output = Vec::new();
    let mut scratch = Vec::new();
    loop {
        while let Some(event) = connection.poll_event() {
            handle_event(hub, &mut connection, event, &mut authorized, &mut readers);
        }
        for (&link, reader) in &mut readers {
            if reader.stolen.swap(false, Ordering::SeqCst) {
                let _ = connection.detach_link(
                    link,
                    Some((
                        Condition::LinkStolen,
                        "a receiver with a higher epoch took over",
                    )),
                );
                reader.next = usize::MAX;
                continue;
            }
            let events = &hub.partitions[reader.partition];
            while reader.next < events.len() && connection.link_credit(link).unwrap_or(0) > 0 {
                let stored = &events[reader.next];
                let last = events.last().expect("not empty");
                let last_offset = last.offset.to_string();
                let offset = stored.offset.to_string();
                let metrics = reader.runtime_metric.then(|| RuntimeMetrics {
                    last_enqueued_sequence_number: last.sequence_number,
                    last_enqueued_offset: &last_offset,
                    last_enqueued_time_ms: last.enqueued_time_ms,
                    retrieval_time_ms: now_ms(),
                });
                let fields = EventFields {
                    sequence_number: stored.sequence_number,
                    offset: &offset,
                    enqueued_time_ms: stored.enqueued_time_ms,
                    partition_key: None,
                    iothub: IotHubAnnotations {
                        device_id: Some(&stored.device_id),
                        module_id: None,
                        auth_method: Some(
                            r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#,
                        ),
                        auth_generation_id: Some("638000000000000001"),
                        enqueued_time_ms: Some(stored.enqueued_time_ms),
                        message_source: Some("Telemetry"),
                    },
                    extra_annotations: &[],
                    properties: EventProperties {
                        message_id: Some(MessageIdRef::String(&stored.message_id)),
                        content_type: Some("application/json"),
                        content_encoding: Some("utf-8"),
                        ..EventProperties::default()
                    },
                    application_properties: &[("source", "stub")],
                    body: &stored.body,
                    runtime_metrics: metrics,
                };
                scratch.clear();
                dataplane_amqp::event::encode_event(&fields, &mut scratch);
                if connection.send_message(link, &scratch, true).is_err() {
                    break;
                }
                reader.next += 1;
            }
        }
        connection.poll_transmit(Instant::now(), &mut output);
        if !output.is_empty() {
            if stream.write_all(&output).is_err() {
                connection.handle_eof();
            }
            output.clear();
        }
        if connection.is_closed() && connection.pending_transmit() == 0 {
            let _ = stream.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
        let wait = connection
            .next_timeout()
            .map_or(Duration::from_millis(50), |at| {
                at.saturating_duration_since(Instant::now())
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut input) {
            Ok(0) => connection.handle_eof(),
            Ok(n) => connection.handle_bytes(&input[..n], Instant::now()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => connection.handle_eof(),
        }
        connection.handle_timeout(Instant::now());
    }
}

fn handle_event(
    hub: &Hub,
    connection: &mut Connection,
    event: Event,
    authorized: &mut bool,
    readers: &mut HashMap<LinkId, Reader>,
) {
    match event {
        Event::SaslInit(_) => {
            connection.complete_sasl(SaslOutcome::Ok).expect("pending");
        }
        Event::ManagementRequest(request) => {
            if let Ok(put) = PutToken::from_request(&request) {
                let (status, description) = if hub.token_valid(&put) {
                    *authorized = true;
                    (200, "OK")
                } else {
                    (401, "InvalidSignature: the token signature is invalid")
                };
                let _ = connection.respond(request.request, status, description, None);
                return;
            }
            let (status, description, body) = match ReadRequest::from_request(&request) {
                _ if !*authorized => (401, "Unauthorized", None),
                Ok(ReadRequest::EventHub { name, .. }) if name == hub.options.hub => {
                    let properties = EventHubProperties {
                        name,
                        created_at_ms: hub.created_at_ms,
                        partition_ids: (0..hub.partitions.len()).map(|p| p.to_string()).collect(),
                    };
                    (200, "OK", Some(properties.to_value()))
                }
                Ok(ReadRequest::Partition {
                    name, partition, ..
                }) if name == hub.options.hub => match hub.partition(&partition) {
                    Some(events) => {
                        let last = events.last();
                        let properties = PartitionProperties {
                            name,
                            partition,
                            begin_sequence_number: 0,
                            last_enqueued_sequence_number: last.map_or(-1, |e| e.sequence_number),
                            last_enqueued_offset: last
                                .map_or("-1".into(), |e| e.offset.to_string()),
                            last_enqueued_time_ms: last.map_or(0, |e| e.enqueued_time_ms),
                            is_partition_empty: events.is_empty(),
                        };
                        (200, "OK", Some(properties.to_value()))
                    }
                    None => (404, "partition not found", None),
                },
                Ok(_) => (404, "entity not found", None),
                Err(_) => (400, "bad request", None),
            };
            let _ = connection.respond(request.request, status, description, body.as_ref());
        }
        Event::ReceiverAttach(attach) => {
            let refuse = |connection: &mut Connection, condition, description: &str| {
                let _ = connection.refuse_link(attach.link, condition, description);
            };
            if !*authorized {
                return refuse(connection, Condition::UnauthorizedAccess, "put-token first");
            }
            let NodeAddress::Partition(PartitionAddress {
                hub: name,
                consumer_group,
                partition,
            }) = &attach.node
            else {
                return refuse(connection, Condition::NotFound, "not a partition address");
            };
            if !name.eq_ignore_ascii_case(&hub.options.hub) || hub.partition(partition).is_none() {
                return refuse(connection, Condition::NotFound, "no such partition");
            }
            let position = match attach.start_position() {
                Ok(position) => position,
                Err(error) => return refuse(connection, error.condition(), &error.to_string()),
            };
            let stolen = Arc::new(AtomicBool::new(false));
            if let Some(epoch) = attach.epoch {
                let mut owners = hub.owners.lock().expect("not poisoned");
                let key = (consumer_group.to_ascii_lowercase(), partition.clone());
                match owners.get(&key) {
                    Some(owner) if owner.epoch > epoch => {
                        drop(owners);
                        return refuse(
                            connection,
                            Condition::LinkStolen,
                            "a higher epoch holds the partition",
                        );
                    }
                    Some(owner) => owner.stolen.store(true, Ordering::SeqCst),
                    None => {}
                }
                owners.insert(
                    key,
                    Owner {
                        epoch,
                        stolen: Arc::clone(&stolen),
                    },
                );
            }
            let index: usize = partition.parse().expect("checked");
            let next = start_index(&hub.partitions[index], position.as_ref());
            connection.accept_link(attach.link).expect("pending");
            readers.insert(
                attach.link,
                Reader {
                    partition: index,
                    next,
                    runtime_metric: attach.wants_runtime_metric(),
                    stolen,
                },
            );
        }
        Event::SenderAttach(attach) => {
            let _ =
                connection.refuse_link(attach.link, Condition::NotImplemented, "no sending here");
        }
        Event::LinkDetached { link, .. } => {
            readers.remove(&link);
        }
        Event::Opened { .. }
        | Event::LinkCredit { .. }
        | Event::Message(_)
        | Event::DeliveryUpdated { .. }
        | Event::Closed(_) => {}
    }
}

fn main() -> std::io::Result<()> {
    let options = parse_options();
    let listener = TcpListener::bind(("127.0.0.1", options.port))?;
    let hub = Arc::new(Hub::new(options));
    println!("LISTENING {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let hub = Arc::clone(&hub);
        std::thread::spawn(move || {
            let _ = serve(&hub, stream);
        });
    }
    Ok(())
}
