//! `shoal events tail`: prints the records of the built-in endpoint's partitions, for people
//! (and, with `--json`, for scripts), straight from the partition files in the data
//! directory, whether a server runs on it or not.
//!
//! It reads what is written: in `durable` mode a record appears here a flush before it is
//! acknowledged to its device. It follows the files (polling every 100 ms), so it works before
//! any consumer endpoint exists and never touches the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use dataplane_log::{Follower, RecordView, SequenceNumber, StartPosition};
use serde_json::{Map, Value, json};

/// How often a following tail looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Arguments of `shoal events tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Data directory of the server.
    #[arg(long, default_value = "./shoal-data")]
    data_dir: PathBuf,
    /// The hub (default: the only one in the data directory).
    #[arg(long)]
    hub: Option<String>,
    /// Only this partition (default: every partition).
    #[arg(long)]
    partition: Option<u32>,
    /// Where to start: earliest, latest, or a sequence number.
    #[arg(long, default_value = "latest")]
    from: String,
    /// One JSON object per line instead of text for people.
    #[arg(long)]
    json: bool,
    /// Print what is there and exit instead of following.
    #[arg(long)]
    no_follow: bool,
}

fn hub_dir(data_dir: &Path, hub: Option<&str>) -> anyhow::Result<PathBuf> {
    let hubs = data_dir.join("hubs");
    if let Some(hub) = hub {
        let dir = hubs.join(hub);
        if !dir.is_dir() {
            bail!("no hub '{hub}' in {}", data_dir.display());
        }
        return Ok(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&hubs)
        .with_context(|| {
            format!(
                "{} has no partitions yet (has a server run with this data directory?)",
                hubs.display()
            )
        })?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("{} holds no hub", hubs.display()),
        _ => bail!("{} holds several hubs; name one with --hub", hubs.display()),
    }
}

fn start_position(from: &str) -> anyhow::Result<StartPosition> {
    Ok(match from {
        "earliest" => StartPosition::Earliest,
        "latest" => StartPosition::Latest,
        sequence => {
            StartPosition::Sequence(SequenceNumber(sequence.parse().with_context(|| {
                format!("--from takes earliest, latest or a sequence number, not {sequence:?}")
            })?))
        }
    })
}

/// Runs the tail.
pub fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let events_dir = hub_dir(&args.data_dir, args.hub.as_deref())?.join("events");
    let mut partitions: Vec<u32> = std::fs::read_dir(&events_dir)
        .with_context(|| format!("reading {}", events_dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    partitions.sort_unstable();
    if let Some(partition) = args.partition {
        if !partitions.contains(&partition) {
            bail!("partition {partition} does not exist (partitions: {partitions:?})");
        }
        partitions = vec![partition];
    }
    let start = start_position(&args.from)?;
    let mut tails: Vec<PartitionTail> = partitions
        .into_iter()
        .map(|partition| PartitionTail {
            partition,
            dir: events_dir.join(partition.to_string()),
            follower: None,
            start,
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    loop {
        for tail in &mut tails {
            tail.print_new(&mut out, args.json)?;
        }
        std::io::Write::flush(&mut out)?;
        if args.no_follow {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// One partition being followed.
struct PartitionTail {
    partition: u32,
    dir: PathBuf,
    /// `None` until the partition has a segment (a server creates it at its first start).
    follower: Option<(Follower, dataplane_log::Cursor)>,
    /// Where to (re)start reading.
    start: StartPosition,
}

impl PartitionTail {
    /// Prints the records written since the last call.
    fn print_new(&mut self, out: &mut impl std::io::Write, as_json: bool) -> anyhow::Result<()> {
        let partition = self.partition;
        if self.follower.is_none() {
            match Follower::open(&self.dir) {
                Ok(follower) => {
                    let cursor = follower.cursor(self.start);
                    self.follower = Some((follower, cursor));
                }
                // No segment yet: nothing to print; a later round looks again.
                Err(dataplane_log::Error::NoSegments { .. }) => return Ok(()),
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!("opening partition {partition} ({})", self.dir.display())
                    });
                }
            }
        }
        let Some((follower, cursor)) = &mut self.follower else {
            return Ok(());
        };
        match follower.refresh() {
            Ok(_) => {}
            // The partition was replaced under us (wiped, or restored from elsewhere): open it
            // again and go on from the next record we would have printed.
            Err(
                dataplane_log::Error::SegmentGap { .. }
                | dataplane_log::Error::CorruptSegment { .. },
            ) => {
                self.start =
                    StartPosition::Sequence(SequenceNumber(follower.readable().end.sequence.0));
                self.follower = None;
                return Ok(());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading partition {partition}"));
            }
        }
        while let Some(record) = cursor
            .next()
            .with_context(|| format!("reading partition {partition}"))?
        {
            self.start = StartPosition::Sequence(SequenceNumber(record.sequence().0 + 1));
            print_record(out, partition, &record, as_json)?;
        }
        Ok(())
    }
}

/// RFC 3339 in UTC with milliseconds, as IoT Hub writes times.
fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|time| {
            time.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn print_record(
    out: &mut impl std::io::Write,
    partition: u32,
    record: &RecordView<'_>,
    as_json: bool,
) -> anyhow::Result<()> {
    let body = record.body()?;
    let mut system = Map::new();
    let mut put = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            system.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    };
    put("message-id", body.message_id());
    put("correlation-id", body.correlation_id());
    let user_id = body
        .user_id()
        .map(|bytes| String::from_utf8_lossy(bytes.bytes()).into_owned());
    put("user-id", user_id.as_deref());
    put("content-type", body.content_type());
    put("content-encoding", body.content_encoding());
    let expiry = body.expiry_time_ms().map(format_ms);
    put("absolute-expiry-time", expiry.as_deref());
    let creation = body.creation_time_ms().map(format_ms);
    put("iothub-creation-time-utc", creation.as_deref());
    put("iothub-connection-device-id", body.connection_device_id());
    put("iothub-connection-module-id", body.connection_module_id());
    put("iothub-connection-auth-method", body.auth_method());
    put(
        "iothub-connection-auth-generation-id",
        body.auth_generation_id(),
    );
    put("iothub-message-source", body.message_source());
    put("iothub-interface-id", body.interface_id());
    put("dt-subject", body.component_name());
    put("dt-dataschema", body.data_schema());
    let enqueued = format_ms(record.enqueued_ms());
    put("iothub-enqueuedtime", Some(&enqueued));
    let mut properties = Map::new();
    if let Some(pairs) = body.properties() {
        for pair in pairs {
            properties.insert(
                pair.key().to_owned(),
                Value::String(pair.value().to_owned()),
            );
        }
    }
    let payload = record.payload()?;
    let text = std::str::from_utf8(payload).ok();
    if as_json {
        let mut line = json!({
            "partition": partition,
            "sequence_number": record.sequence().0,
            "offset": record.offset().0.to_string(),
            "enqueued_time": enqueued,
            "enqueued_time_ms": record.enqueued_ms(),
            "system_properties": system,
            "properties": properties,
        });
        match text {
            Some(text) => line["body"] = Value::String(text.to_owned()),
            None => {
                line["body_base64"] = Value::String(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    payload,
                ));
            }
        }
        writeln!(out, "{line}")?;
        return Ok(());
    }
    writeln!(
        out,
        "partition {partition}  sequence {}  offset {}  {}  {}",
        record.sequence().0,
        record.offset().0,
        system
            .get("iothub-enqueuedtime")
            .and_then(Value::as_str)
            .unwrap_or("-"),
        system
            .get("iothub-connection-device-id")
            .and_then(Value::as_str)
            .unwrap_or("-"),
    )?;
    for (key, value) in &system {
        if key != "iothub-enqueuedtime" {
            writeln!(out, "  {key}: {}", value.as_str().unwrap_or_default())?;
        }
    }
    for (key, value) in &properties {
        writeln!(
            out,
            "  property {key}: {}",
            value.as_str().unwrap_or_default()
        )?;
    }
    match text {
        Some(text) => writeln!(out, "  body ({} bytes): {text}", payload.len())?,
        None => writeln!(out, "  body ({} bytes, binary)", payload.len())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_positions_parse() {
        assert!(super::start_position("earliest").is_ok());
        assert!(super::start_position("latest").is_ok());
        assert!(super::start_position("42").is_ok());
        assert!(super::start_position("soon").is_err());
    }
}
