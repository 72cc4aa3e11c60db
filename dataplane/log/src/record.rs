//! One record on disk: a fixed header followed by a `shoal.log.Record` flatbuffer.
//!
//! ```text
//!  byte 0        4          8                16               24               32       36       40
//!  ┌────────────┬──────────┬────────────────┬────────────────┬────────────────┬────────┬────────┐
//!  │ crc32c u32 │length u32│ sequence u64   │ offset u64     │ enqueued_ms i64│flags   │reserved│
//!  └────────────┴──────────┴────────────────┴────────────────┴────────────────┴──u32───┴──u32───┘
//!  ┌───────────────────────────────────────────────────────────────────┬───────────────────────┐
//!  │ body: flatbuffer `shoal.log.Record`, (length - 40) bytes          │ zero padding to 8     │
//!  └───────────────────────────────────────────────────────────────────┴───────────────────────┘
//! ```
//!
//! - All integers are little-endian. `length` counts header and body, not the padding; the
//!   next record starts at `align8(length)`. Records are 8-byte aligned within the segment, so
//!   the body starts 8-byte aligned and its 8-byte scalars are aligned in memory.
//! - `crc32c` (Castagnoli) covers bytes `4..length`: every header field after itself and the
//!   body. The padding is not covered and is always written as zeros.
//! - `offset` is the record's byte position in the partition and `sequence` its sequence number;
//!   both are redundant with the position and are checked on every read, so a record copied or
//!   shifted to the wrong place never validates.
//! - `flags` bit 0 ([`FLAG_BODY_RECORD_V1`]) says the body is a `shoal.log.Record` flatbuffer;
//!   other bits and `reserved` must be zero (a newer writer sets them; this reader refuses).
//! - A header of all zeros marks the end of the records in a segment (files are preallocated
//!   with zeros).
//!
//! # Body encoding
//!
//! The body is a standard flatbuffer that any flatbuffers reader (and the generated code in
//! `schemas`) reads and verifies. It is produced by [`encode_body`], which writes it front to
//! back, straight into its destination (the staging buffer or the mapped segment), with every
//! reference pointing forward:
//!
//! ```text
//!  0      4                 T = 36 or 44  T+4            table end
//!  ┌──────┬─────────────────┬─────────────┬─────────────┬──────────────────────────────────────┐
//!  │ root │ Record vtable   │ soffset i32 │ i64 fields, │ strings and vectors in field order,  │
//!  │ u32  │ 14 slots (32 B) │ = T - 4     │ then u32    │ each 4-aligned; properties as one    │
//!  │ = T  │ or 18 slots     │             │ uoffsets    │ shared vtable, the vector, 12-byte   │
//!  │      │ (40 B)          │             │ (present    │ tables, then key/value strings;      │
//!  │      │                 │             │ fields only)│ the payload vector last              │
//!  └──────┴─────────────────┴─────────────┴─────────────┴──────────────────────────────────────┘
//! ```
//!
//! The vtable has the 14 slots of the first release's schema unless one of the fields added
//! later (`interface_id`, `component_name`, `data_schema`, `output_name`) is present; then it
//! has all 18. A body without the later fields is therefore byte for byte what the first
//! release wrote, and every body written before the fields existed reads back with them
//! absent (flatbuffers treats a slot beyond the end of a vtable as an absent field). Objects
//! are written in the table's slot order, which puts the later strings after
//! `message_source` and before the properties; the payload stays last.
//!
//! The same meaning could be produced with a `FlatBufferBuilder` ([`BuilderEncoder`] does, for
//! tests and for the comparison in `DECISIONS.md`), but the builder writes back to front into
//! its own buffer, which then has to be copied; the forward encoder knows the exact size before
//! writing, copies the payload exactly once, and measured 2.4-3.1x faster per body (21 ns
//! versus 52 ns for a 256-byte payload, 83 ns versus 203 ns with IoT Hub's system properties;
//! `benches/benches/log_append.rs`, `log_encode` group).
//!
//! # Invariants
//! - `body_bytes(input)` is exactly the number of bytes `encode_body` writes for `input`.
//! - Every body `encode_body` writes passes the flatbuffers verifier for `shoal.log.Record`.

use std::fmt;

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use schemas::record as fb;

use crate::error::{BodyError, Corruption};
use crate::{Offset, SequenceNumber};

/// Size of [`RecordHeader`] on disk.
pub const RECORD_HEADER_BYTES: usize = 40;

/// Records start at multiples of this within a segment's data area.
pub const RECORD_ALIGNMENT_BYTES: usize = 8;

/// `flags` bit: the body is a `shoal.log.Record` flatbuffer (version 1 of the body format).
pub const FLAG_BODY_RECORD_V1: u32 = 1;

/// Flags this version reads.
const FLAGS_KNOWN: u32 = FLAG_BODY_RECORD_V1;

/// Number of fields in the `Record` table.
const RECORD_FIELD_COUNT: usize = 18;

/// Fields of the first release's schema (up to `payload`). A body with none of the later
/// fields gets a vtable of this many slots, exactly as the first release wrote it.
const RECORD_FIELD_COUNT_FIRST: usize = 14;

/// Root offset, then the Record vtable, then the table.
const VTABLE_POSITION: usize = 4;
const VTABLE_BYTES_MAX: usize = vtable_bytes(RECORD_FIELD_COUNT);

/// Bytes of a Record vtable with `slots` slots.
const fn vtable_bytes(slots: usize) -> usize {
    4 + 2 * slots
}

/// Where the table starts after a vtable of `slots` slots.
const fn table_position(slots: usize) -> usize {
    VTABLE_POSITION + vtable_bytes(slots)
}

/// Smallest body: root, the first release's vtable, table with the payload slot, empty
/// payload vector.
pub const BODY_BYTES_MIN: usize = table_position(RECORD_FIELD_COUNT_FIRST) + 4 + 4 + 4;

/// Smallest record on disk.
pub const RECORD_BYTES_MIN: usize = align8(RECORD_HEADER_BYTES + BODY_BYTES_MIN);

/// Property tables: a shared 8-byte vtable (two slots), 12-byte tables.
const PROPERTY_VTABLE_BYTES: usize = 8;
const PROPERTY_TABLE_BYTES: usize = 12;

// Field ids (vtable slot numbers) in schema order.
const F_MESSAGE_ID: usize = 0;
const F_CORRELATION_ID: usize = 1;
const F_USER_ID: usize = 2;
const F_CONTENT_TYPE: usize = 3;
const F_CONTENT_ENCODING: usize = 4;
const F_CREATION_TIME_MS: usize = 5;
const F_EXPIRY_TIME_MS: usize = 6;
const F_CONNECTION_DEVICE_ID: usize = 7;
const F_CONNECTION_MODULE_ID: usize = 8;
const F_AUTH_METHOD: usize = 9;
const F_AUTH_GENERATION_ID: usize = 10;
const F_MESSAGE_SOURCE: usize = 11;
const F_PROPERTIES: usize = 12;
const F_PAYLOAD: usize = 13;
const F_INTERFACE_ID: usize = 14;
const F_COMPONENT_NAME: usize = 15;
const F_DATA_SCHEMA: usize = 16;
const F_OUTPUT_NAME: usize = 17;

/// The vtable byte offset of field `id`, as flatc numbers it.
const fn vt(id: usize) -> u16 {
    (4 + 2 * id) as u16
}

// The forward encoder hard-codes the schema's field numbering; these fail to compile if the
// schema and the encoder ever disagree.
const _: () = assert!(fb::Record::VT_MESSAGE_ID == vt(F_MESSAGE_ID));
const _: () = assert!(fb::Record::VT_CORRELATION_ID == vt(F_CORRELATION_ID));
const _: () = assert!(fb::Record::VT_USER_ID == vt(F_USER_ID));
const _: () = assert!(fb::Record::VT_CONTENT_TYPE == vt(F_CONTENT_TYPE));
const _: () = assert!(fb::Record::VT_CONTENT_ENCODING == vt(F_CONTENT_ENCODING));
const _: () = assert!(fb::Record::VT_CREATION_TIME_MS == vt(F_CREATION_TIME_MS));
const _: () = assert!(fb::Record::VT_EXPIRY_TIME_MS == vt(F_EXPIRY_TIME_MS));
const _: () = assert!(fb::Record::VT_CONNECTION_DEVICE_ID == vt(F_CONNECTION_DEVICE_ID));
const _: () = assert!(fb::Record::VT_CONNECTION_MODULE_ID == vt(F_CONNECTION_MODULE_ID));
const _: () = assert!(fb::Record::VT_AUTH_METHOD == vt(F_AUTH_METHOD));
const _: () = assert!(fb::Record::VT_AUTH_GENERATION_ID == vt(F_AUTH_GENERATION_ID));
const _: () = assert!(fb::Record::VT_MESSAGE_SOURCE == vt(F_MESSAGE_SOURCE));
const _: () = assert!(fb::Record::VT_PROPERTIES == vt(F_PROPERTIES));
const _: () = assert!(fb::Record::VT_PAYLOAD == vt(F_PAYLOAD));
const _: () = assert!(fb::Record::VT_INTERFACE_ID == vt(F_INTERFACE_ID));
const _: () = assert!(fb::Record::VT_COMPONENT_NAME == vt(F_COMPONENT_NAME));
const _: () = assert!(fb::Record::VT_DATA_SCHEMA == vt(F_DATA_SCHEMA));
const _: () = assert!(fb::Record::VT_OUTPUT_NAME == vt(F_OUTPUT_NAME));
const _: () = assert!(RECORD_FIELD_COUNT_FIRST == F_PAYLOAD + 1);
const _: () = assert!(RECORD_FIELD_COUNT == F_OUTPUT_NAME + 1);
const _: () = assert!(fb::Property::VT_KEY == 4 && fb::Property::VT_VALUE == 6);
// The table starts 4 bytes before an 8-byte boundary so that its i64 fields, which follow the
// 4-byte soffset, are 8-byte aligned; both vtable sizes keep it there.
const _: () = assert!(table_position(RECORD_FIELD_COUNT_FIRST) % 8 == 4);
const _: () = assert!(table_position(RECORD_FIELD_COUNT) % 8 == 4);
const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGNMENT_BYTES));

/// The fixed header in front of every record. See the module docs for the layout.
///
/// # Invariants
/// - `length >= RECORD_HEADER_BYTES + BODY_BYTES_MIN` for every record written.
/// - `crc32c` is the CRC32C of the record bytes `4..length`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordHeader {
    /// CRC32C of the record bytes `4..length`.
    pub crc32c: u32,
    /// Header plus body bytes, without the padding.
    pub length: u32,
    /// Sequence number, contiguous from 0 per partition.
    pub sequence: u64,
    /// Byte position of the record in the partition.
    pub offset: u64,
    /// Time the partition accepted the record, ms since the Unix epoch; never decreases.
    pub enqueued_ms: i64,
    /// Body format flags ([`FLAG_BODY_RECORD_V1`]).
    pub flags: u32,
    /// Zero.
    pub reserved: u32,
}

const _: () = assert!(size_of::<RecordHeader>() == RECORD_HEADER_BYTES);
const _: () = assert!(align_of::<RecordHeader>() == 8);
const _: () = assert!(std::mem::offset_of!(RecordHeader, crc32c) == 0);
const _: () = assert!(std::mem::offset_of!(RecordHeader, length) == 4);
const _: () = assert!(std::mem::offset_of!(RecordHeader, sequence) == 8);
const _: () = assert!(std::mem::offset_of!(RecordHeader, offset) == 16);
const _: () = assert!(std::mem::offset_of!(RecordHeader, enqueued_ms) == 24);
const _: () = assert!(std::mem::offset_of!(RecordHeader, flags) == 32);
const _: () = assert!(std::mem::offset_of!(RecordHeader, reserved) == 36);

impl RecordHeader {
    /// Serializes the header (little-endian, the `#[repr(C)]` field order).
    pub fn encode(&self, out: &mut [u8; RECORD_HEADER_BYTES]) {
        out[0..4].copy_from_slice(&self.crc32c.to_le_bytes());
        out[4..8].copy_from_slice(&self.length.to_le_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out[16..24].copy_from_slice(&self.offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.enqueued_ms.to_le_bytes());
        out[32..36].copy_from_slice(&self.flags.to_le_bytes());
        out[36..40].copy_from_slice(&self.reserved.to_le_bytes());
    }

    /// Parses a header. Any 40 bytes parse; validation (length bounds, flags, CRC) is separate.
    pub fn decode(bytes: &[u8; RECORD_HEADER_BYTES]) -> RecordHeader {
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        RecordHeader {
            crc32c: u32_at(0),
            length: u32_at(4),
            sequence: u64_at(8),
            offset: u64_at(16),
            enqueued_ms: u64_at(24) as i64,
            flags: u32_at(32),
            reserved: u32_at(36),
        }
    }
}

/// Rounds up to the record alignment.
pub const fn align8(bytes: usize) -> usize {
    (bytes + (RECORD_ALIGNMENT_BYTES - 1)) & !(RECORD_ALIGNMENT_BYTES - 1)
}

const fn align4(bytes: usize) -> usize {
    (bytes + 3) & !3
}

/// One record to append: IoT Hub's system properties, the application properties and the
/// payload, all borrowed. `Default` is an empty record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordInput<'a> {
    /// `message-id`.
    pub message_id: Option<&'a str>,
    /// `correlation-id`.
    pub correlation_id: Option<&'a str>,
    /// `user-id`.
    pub user_id: Option<&'a [u8]>,
    /// `content-type`.
    pub content_type: Option<&'a str>,
    /// `content-encoding`.
    pub content_encoding: Option<&'a str>,
    /// `iothub-creation-time-utc`, ms since the Unix epoch.
    pub creation_time_ms: Option<i64>,
    /// Absolute expiry, ms since the Unix epoch.
    pub expiry_time_ms: Option<i64>,
    /// `iothub-connection-device-id`.
    pub connection_device_id: Option<&'a str>,
    /// `iothub-connection-module-id`.
    pub connection_module_id: Option<&'a str>,
    /// `iothub-connection-auth-method`.
    pub auth_method: Option<&'a str>,
    /// `iothub-connection-auth-generation-id`.
    pub auth_generation_id: Option<&'a str>,
    /// `iothub-message-source`.
    pub message_source: Option<&'a str>,
    /// Application properties, in order. Empty means absent.
    pub properties: &'a [(&'a str, &'a str)],
    /// The message body.
    pub payload: &'a [u8],
    /// `iothub-interface-id`, from the device's `$.ifid`.
    pub interface_id: Option<&'a str>,
    /// `dt-subject`, from the device's `$.sub`: the Plug and Play component name.
    pub component_name: Option<&'a str>,
    /// `dt-dataschema`: the Digital Twins model the telemetry conforms to.
    pub data_schema: Option<&'a str>,
    /// `$.on`: the module output the message was sent to (routes select on it).
    pub output_name: Option<&'a str>,
}

impl RecordInput<'_> {
    /// Number of present string and byte-vector fields other than properties and payload.
    #[inline]
    fn optional_reference_count(&self) -> usize {
        usize::from(self.message_id.is_some())
            + usize::from(self.correlation_id.is_some())
            + usize::from(self.user_id.is_some())
            + usize::from(self.content_type.is_some())
            + usize::from(self.content_encoding.is_some())
            + usize::from(self.connection_device_id.is_some())
            + usize::from(self.connection_module_id.is_some())
            + usize::from(self.auth_method.is_some())
            + usize::from(self.auth_generation_id.is_some())
            + usize::from(self.message_source.is_some())
    }

    /// Whether a field added after the first release is present (then the body gets the
    /// 18-slot vtable).
    #[inline]
    fn has_later_fields(&self) -> bool {
        self.interface_id.is_some()
            || self.component_name.is_some()
            || self.data_schema.is_some()
            || self.output_name.is_some()
    }

    /// The fields added after the first release that are present, and their objects' bytes.
    #[inline]
    fn later_fields(&self) -> (usize, usize) {
        let fields = [
            self.interface_id,
            self.component_name,
            self.data_schema,
            self.output_name,
        ];
        let present = fields.iter().filter(|f| f.is_some()).count();
        let bytes = fields.iter().map(|f| string_bytes(*f)).sum();
        (present, bytes)
    }
}

/// Bytes of a string (`len`, bytes, NUL) or byte vector (`len`, bytes), padded to 4.
#[inline]
const fn object_bytes(len: usize, nul: bool) -> usize {
    align4(4 + len + nul as usize)
}

#[inline]
fn string_bytes(value: Option<&str>) -> usize {
    value.map_or(0, |s| object_bytes(s.len(), true))
}

/// Exact size of the body [`encode_body`] writes for `input`.
pub fn body_bytes(input: &RecordInput<'_>) -> usize {
    let scalars =
        usize::from(input.creation_time_ms.is_some()) + usize::from(input.expiry_time_ms.is_some());
    let references = input.optional_reference_count() + usize::from(!input.properties.is_empty());
    // soffset, scalars, one slot per reference, the payload slot.
    let table = 4 + 8 * scalars + 4 * references + 4;
    let mut objects = string_bytes(input.message_id)
        + string_bytes(input.correlation_id)
        + input.user_id.map_or(0, |b| object_bytes(b.len(), false))
        + string_bytes(input.content_type)
        + string_bytes(input.content_encoding)
        + string_bytes(input.connection_device_id)
        + string_bytes(input.connection_module_id)
        + string_bytes(input.auth_method)
        + string_bytes(input.auth_generation_id)
        + string_bytes(input.message_source);
    let mut slots = RECORD_FIELD_COUNT_FIRST;
    let mut table = table;
    if input.has_later_fields() {
        let (present, bytes) = input.later_fields();
        slots = RECORD_FIELD_COUNT;
        table += 4 * present;
        objects += bytes;
    }
    if !input.properties.is_empty() {
        let count = input.properties.len();
        objects += PROPERTY_VTABLE_BYTES + 4 + 4 * count + PROPERTY_TABLE_BYTES * count;
        for (key, value) in input.properties {
            objects += object_bytes(key.len(), true) + object_bytes(value.len(), true);
        }
    }
    objects += 4 + input.payload.len();
    table_position(slots) + table + objects
}

/// Size of the whole record on disk (header, body, padding) for a body of `body_bytes`.
pub const fn record_bytes(body_bytes: usize) -> usize {
    align8(RECORD_HEADER_BYTES + body_bytes)
}

#[inline]
fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Writes a string (with NUL) or byte vector at `at` (4-aligned), zeroing its padding; returns
/// the position after it.
#[inline]
fn put_object(out: &mut [u8], at: usize, bytes: &[u8], nul: bool) -> usize {
    let end = at + object_bytes(bytes.len(), nul);
    put_u32(out, at, bytes.len() as u32);
    out[at + 4..at + 4 + bytes.len()].copy_from_slice(bytes);
    out[at + 4 + bytes.len()..end].fill(0);
    end
}

/// Front-to-back writer of one Record table: table slots are handed out in field order, and
/// each reference field's object is appended after the table at the same time.
struct TableWriter<'o> {
    out: &'o mut [u8],
    vtable: [u8; VTABLE_BYTES_MAX],
    table: usize,
    slot: usize,
    at: usize,
}

impl TableWriter<'_> {
    #[inline]
    fn vtable_entry(&mut self, id: usize, slot: usize) {
        let entry = ((slot - self.table) as u16).to_le_bytes();
        self.vtable[4 + 2 * id] = entry[0];
        self.vtable[4 + 2 * id + 1] = entry[1];
    }

    #[inline]
    fn scalar(&mut self, id: usize, value: Option<i64>) {
        if let Some(value) = value {
            debug_assert!(self.slot.is_multiple_of(8), "i64 field alignment"); // per field, hot
            self.vtable_entry(id, self.slot);
            self.out[self.slot..self.slot + 8].copy_from_slice(&value.to_le_bytes());
            self.slot += 8;
        }
    }

    /// A uoffset slot pointing at the object about to be written at `self.at`.
    #[inline]
    fn reference(&mut self, id: usize) {
        self.vtable_entry(id, self.slot);
        put_u32(self.out, self.slot, (self.at - self.slot) as u32);
        self.slot += 4;
    }

    #[inline]
    fn object(&mut self, id: usize, value: Option<&[u8]>, nul: bool) {
        if let Some(bytes) = value {
            self.reference(id);
            self.at = put_object(self.out, self.at, bytes, nul);
        }
    }

    #[inline]
    fn string(&mut self, id: usize, value: Option<&str>) {
        self.object(id, value.map(str::as_bytes), true);
    }
}

/// Writes the flatbuffer body for `input` into `out`, front to back. `out.len()` must be
/// exactly [`body_bytes`]`(input)`.
pub fn encode_body(input: &RecordInput<'_>, out: &mut [u8]) {
    // One copy of the encoder per vtable size, so that the common case (none of the later
    // fields) keeps constant positions and fixed-size copies: a single encoder with a run-time
    // vtable size measured 19-32 ns per 256-byte body against 13 ns.
    if input.has_later_fields() {
        encode_body_with::<RECORD_FIELD_COUNT>(input, out);
    } else {
        encode_body_with::<RECORD_FIELD_COUNT_FIRST>(input, out);
    }
}

/// [`encode_body`] for a vtable of `SLOTS` slots.
#[inline]
fn encode_body_with<const SLOTS: usize>(input: &RecordInput<'_>, out: &mut [u8]) {
    const { assert!(SLOTS == RECORD_FIELD_COUNT_FIRST || SLOTS == RECORD_FIELD_COUNT) };
    assert!(
        out.len() >= BODY_BYTES_MIN,
        "body buffer below the minimum body"
    );
    let scalars =
        usize::from(input.creation_time_ms.is_some()) + usize::from(input.expiry_time_ms.is_some());
    let mut references =
        input.optional_reference_count() + usize::from(!input.properties.is_empty());
    if SLOTS > RECORD_FIELD_COUNT_FIRST {
        references += input.later_fields().0;
    }
    let vtable_len = vtable_bytes(SLOTS);
    let table_start = VTABLE_POSITION + vtable_len;
    let table_end = table_start + 4 + 8 * scalars + 4 * references + 4;
    let mut vtable = [0u8; VTABLE_BYTES_MAX];
    vtable[0..2].copy_from_slice(&(vtable_len as u16).to_le_bytes());
    vtable[2..4].copy_from_slice(&((table_end - table_start) as u16).to_le_bytes());
    put_u32(out, 0, table_start as u32);
    put_u32(out, table_start, (table_start - VTABLE_POSITION) as u32);

    let mut table = TableWriter {
        out,
        vtable,
        table: table_start,
        slot: table_start + 4,
        at: table_end,
    };
    table.scalar(F_CREATION_TIME_MS, input.creation_time_ms);
    table.scalar(F_EXPIRY_TIME_MS, input.expiry_time_ms);
    table.string(F_MESSAGE_ID, input.message_id);
    table.string(F_CORRELATION_ID, input.correlation_id);
    table.object(F_USER_ID, input.user_id, false);
    table.string(F_CONTENT_TYPE, input.content_type);
    table.string(F_CONTENT_ENCODING, input.content_encoding);
    table.string(F_CONNECTION_DEVICE_ID, input.connection_device_id);
    table.string(F_CONNECTION_MODULE_ID, input.connection_module_id);
    table.string(F_AUTH_METHOD, input.auth_method);
    table.string(F_AUTH_GENERATION_ID, input.auth_generation_id);
    table.string(F_MESSAGE_SOURCE, input.message_source);
    if SLOTS > RECORD_FIELD_COUNT_FIRST {
        table.string(F_INTERFACE_ID, input.interface_id);
        table.string(F_COMPONENT_NAME, input.component_name);
        table.string(F_DATA_SCHEMA, input.data_schema);
        table.string(F_OUTPUT_NAME, input.output_name);
    }
    if !input.properties.is_empty() {
        // The field points at the vector, which follows the shared property vtable.
        table.at += PROPERTY_VTABLE_BYTES;
        table.reference(F_PROPERTIES);
        table.at = put_properties(
            table.out,
            table.at - PROPERTY_VTABLE_BYTES,
            input.properties,
        );
    }
    table.reference(F_PAYLOAD);
    let TableWriter {
        out,
        vtable,
        slot,
        at,
        ..
    } = table;
    assert!(slot == table_end, "the table holds exactly its slots");
    out[VTABLE_POSITION..table_start].copy_from_slice(&vtable[..vtable_len]);
    put_u32(out, at, input.payload.len() as u32);
    out[at + 4..at + 4 + input.payload.len()].copy_from_slice(input.payload);
    assert!(
        at + 4 + input.payload.len() == out.len(),
        "body_bytes and encode_body disagree"
    );
}

/// Writes the properties block at `at`: shared vtable, vector of uoffsets, tables, strings.
fn put_properties(out: &mut [u8], at: usize, properties: &[(&str, &str)]) -> usize {
    let vtable = at;
    let mut header = [0u8; PROPERTY_VTABLE_BYTES];
    header[0..2].copy_from_slice(&(PROPERTY_VTABLE_BYTES as u16).to_le_bytes());
    header[2..4].copy_from_slice(&(PROPERTY_TABLE_BYTES as u16).to_le_bytes());
    header[4..6].copy_from_slice(&4u16.to_le_bytes());
    header[6..8].copy_from_slice(&8u16.to_le_bytes());
    out[vtable..vtable + PROPERTY_VTABLE_BYTES].copy_from_slice(&header);
    let vector = vtable + PROPERTY_VTABLE_BYTES;
    let count = properties.len();
    put_u32(out, vector, count as u32);
    let tables = vector + 4 + 4 * count;
    let mut strings = tables + PROPERTY_TABLE_BYTES * count;
    for (i, (key, value)) in properties.iter().enumerate() {
        let element = vector + 4 + 4 * i;
        let table = tables + PROPERTY_TABLE_BYTES * i;
        put_u32(out, element, (table - element) as u32);
        put_u32(out, table, (table - vtable) as u32);
        put_u32(out, table + 4, (strings - (table + 4)) as u32);
        strings = put_object(out, strings, key.as_bytes(), true);
        put_u32(out, table + 8, (strings - (table + 8)) as u32);
        strings = put_object(out, strings, value.as_bytes(), true);
    }
    strings
}

/// Where a record goes in the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPlace {
    /// Its sequence number.
    pub sequence: SequenceNumber,
    /// Its offset.
    pub offset: Offset,
    /// Its enqueued time.
    pub enqueued_ms: i64,
}

/// Writes header (with a zero CRC), body and padding into `out` (exactly
/// [`record_bytes`]`(body_bytes)` long); [`seal_crc32c`] fills in the CRC.
pub fn encode_record_unsealed(
    input: &RecordInput<'_>,
    body_bytes: usize,
    place: RecordPlace,
    out: &mut [u8],
) {
    let length = RECORD_HEADER_BYTES + body_bytes;
    assert!(out.len() == align8(length), "record buffer size");
    assert!(
        u32::try_from(length).is_ok(),
        "record length fits the header"
    );
    encode_body(input, &mut out[RECORD_HEADER_BYTES..length]);
    out[length..].fill(0);
    let header = RecordHeader {
        crc32c: 0,
        length: length as u32,
        sequence: place.sequence.0,
        offset: place.offset.0,
        enqueued_ms: place.enqueued_ms,
        flags: FLAG_BODY_RECORD_V1,
        reserved: 0,
    };
    let (head, _) = out
        .split_first_chunk_mut::<RECORD_HEADER_BYTES>()
        .expect("record buffer holds a header");
    header.encode(head);
}

/// The CRC-covered bytes of an unsealed record (`4..length`).
fn covered(record: &[u8]) -> &[u8] {
    let length = u32::from_le_bytes([record[4], record[5], record[6], record[7]]) as usize;
    assert!(
        length >= RECORD_HEADER_BYTES && length <= record.len(),
        "an encoded record"
    );
    &record[4..length]
}

/// Computes and stores the CRC of one unsealed record.
pub fn seal_crc32c(record: &mut [u8]) -> u32 {
    let crc = crc32c::crc32c(covered(record));
    record[0..4].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Computes and stores the CRCs of three unsealed records at once. The CRC32 instruction has a
/// latency of three cycles and a throughput of one per cycle, so a single short record (a few
/// hundred bytes, below the sizes where the crc32c crate interleaves) leaves two thirds of the
/// unit idle; three independent records keep it busy.
pub fn seal_crc32c_x3(a: &mut [u8], b: &mut [u8], c: &mut [u8]) {
    let crcs = crc32c_x3([covered(a), covered(b), covered(c)]);
    a[0..4].copy_from_slice(&crcs[0].to_le_bytes());
    b[0..4].copy_from_slice(&crcs[1].to_le_bytes());
    c[0..4].copy_from_slice(&crcs[2].to_le_bytes());
}

/// CRC32C of three buffers, interleaved where the CPU has SSE4.2.
pub fn crc32c_x3(buffers: [&[u8]; 3]) -> [u32; 3] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE4.2, checked just above.
        return unsafe { crc32c_x3_sse42(buffers) };
    }
    buffers.map(crc32c::crc32c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_x3_sse42(buffers: [&[u8]; 3]) -> [u32; 3] {
    use std::arch::x86_64::_mm_crc32_u64;
    let common = buffers.iter().map(|b| b.len()).min().unwrap_or(0) / 8 * 8;
    let word = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        u64::from_le_bytes(word)
    };
    let (mut a, mut b, mut c) = (
        u64::from(u32::MAX),
        u64::from(u32::MAX),
        u64::from(u32::MAX),
    );
    let lanes = buffers[0][..common]
        .chunks_exact(8)
        .zip(buffers[1][..common].chunks_exact(8))
        .zip(buffers[2][..common].chunks_exact(8));
    for ((x, y), z) in lanes {
        a = _mm_crc32_u64(a, word(x));
        b = _mm_crc32_u64(b, word(y));
        c = _mm_crc32_u64(c, word(z));
    }
    // Each running register is the CRC state of its prefix; finish the rest with the crate,
    // which takes (and returns) finalized CRCs.
    [
        crc32c::crc32c_append(!(a as u32), &buffers[0][common..]),
        crc32c::crc32c_append(!(b as u32), &buffers[1][common..]),
        crc32c::crc32c_append(!(c as u32), &buffers[2][common..]),
    ]
}

/// Writes a whole record (header, body, zero padding) into `out`, which must be exactly
/// [`record_bytes`]`(body_bytes)` long, and returns its header.
pub fn encode_record(
    input: &RecordInput<'_>,
    body_bytes: usize,
    place: RecordPlace,
    out: &mut [u8],
) -> RecordHeader {
    encode_record_unsealed(input, body_bytes, place, out);
    let crc32c = seal_crc32c(out);
    let (head, _) = out
        .split_first_chunk::<RECORD_HEADER_BYTES>()
        .expect("record buffer holds a header");
    let header = RecordHeader::decode(head);
    assert!(header.crc32c == crc32c, "the header carries its CRC");
    header
}

/// What [`check_record`] expects of the record at a position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    /// The partition offset of the position.
    pub offset: u64,
    /// The next sequence number, when known.
    pub sequence: Option<u64>,
    /// The previous record's enqueued time, when known.
    pub enqueued_ms_min: Option<i64>,
    /// Whether to compute the CRC.
    pub verify_crc: bool,
}

/// The outcome of [`check_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// A valid record of `stride` bytes (padding included).
    Record { header: RecordHeader, stride: usize },
    /// An all-zero header (or all-zero bytes shorter than a header): no record here.
    End,
    /// Something that is neither.
    Bad(Corruption),
}

/// Validates the record at `position` of a segment's data area `area` (which ends at the
/// segment's capacity or at the readable end). Never panics, whatever the bytes.
pub(crate) fn check_record(area: &[u8], position: usize, expect: Expect) -> Checked {
    assert!(position <= area.len(), "position inside the area");
    assert!(
        position.is_multiple_of(RECORD_ALIGNMENT_BYTES),
        "records are 8-byte aligned"
    );
    let rest = &area[position..];
    let Some(head) = rest.first_chunk::<RECORD_HEADER_BYTES>() else {
        return if rest.iter().all(|b| *b == 0) {
            Checked::End
        } else {
            Checked::Bad(Corruption::PartialHeader)
        };
    };
    let header = RecordHeader::decode(head);
    if header.length == 0 && head.iter().all(|b| *b == 0) {
        return Checked::End;
    }
    let length = header.length as usize;
    if length < RECORD_HEADER_BYTES + BODY_BYTES_MIN || align8(length) > rest.len() {
        return Checked::Bad(Corruption::LengthOutOfBounds {
            length: header.length,
        });
    }
    if header.flags & !FLAGS_KNOWN != 0
        || header.flags & FLAG_BODY_RECORD_V1 == 0
        || header.reserved != 0
    {
        return Checked::Bad(Corruption::UnknownFlags {
            flags: header.flags,
            reserved: header.reserved,
        });
    }
    if header.offset != expect.offset {
        return Checked::Bad(Corruption::OffsetMismatch {
            expected: expect.offset,
            found: header.offset,
        });
    }
    if let Some(sequence) = expect.sequence
        && header.sequence != sequence
    {
        return Checked::Bad(Corruption::SequenceMismatch {
            expected: sequence,
            found: header.sequence,
        });
    }
    if let Some(previous) = expect.enqueued_ms_min
        && header.enqueued_ms < previous
    {
        return Checked::Bad(Corruption::TimeRegression {
            previous,
            found: header.enqueued_ms,
        });
    }
    if expect.verify_crc {
        let computed = crc32c::crc32c(&rest[4..length]);
        if computed != header.crc32c {
            return Checked::Bad(Corruption::ChecksumMismatch {
                stored: header.crc32c,
                computed,
            });
        }
    }
    Checked::Record {
        header,
        stride: align8(length),
    }
}

/// A record read in place from a segment mapping: header fields, body and payload borrow the
/// mapping, nothing is copied.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    header: RecordHeader,
    bytes: &'a [u8],
}

impl fmt::Debug for RecordView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordView")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<'a> RecordView<'a> {
    /// Wraps validated record bytes (`header.length` bytes, no padding).
    pub(crate) fn new(header: RecordHeader, bytes: &'a [u8]) -> RecordView<'a> {
        assert!(
            bytes.len() == header.length as usize,
            "view covers exactly the record"
        );
        assert!(
            bytes.len() >= RECORD_HEADER_BYTES + BODY_BYTES_MIN,
            "view holds a body"
        );
        RecordView { header, bytes }
    }

    /// The header.
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// Sequence number.
    pub fn sequence(&self) -> SequenceNumber {
        SequenceNumber(self.header.sequence)
    }

    /// Offset (byte position in the partition).
    pub fn offset(&self) -> Offset {
        Offset(self.header.offset)
    }

    /// Offset of the record that follows this one.
    pub fn next_offset(&self) -> Offset {
        Offset(self.header.offset + align8(self.bytes.len()) as u64)
    }

    /// Enqueued time, ms since the Unix epoch.
    pub fn enqueued_ms(&self) -> i64 {
        self.header.enqueued_ms
    }

    /// Header flags.
    pub fn flags(&self) -> u32 {
        self.header.flags
    }

    /// The record as stored: header and body, without padding.
    pub fn raw(&self) -> &'a [u8] {
        self.bytes
    }

    /// The flatbuffer body bytes.
    pub fn body_bytes(&self) -> &'a [u8] {
        &self.bytes[RECORD_HEADER_BYTES..]
    }

    /// Recomputes the CRC32C and compares it with the header.
    pub fn crc_is_valid(&self) -> bool {
        crc32c::crc32c(&self.bytes[4..]) == self.header.crc32c
    }

    /// The verified flatbuffers accessor for the body (system properties, application
    /// properties, payload). Runs the flatbuffers verifier, which costs about as much as reading
    /// the fields once; use [`RecordView::payload`] when only the payload is needed.
    pub fn body(&self) -> Result<fb::Record<'a>, crate::Error> {
        fb::root_as_record(self.body_bytes()).map_err(|error| crate::Error::InvalidBody {
            offset: self.offset(),
            detail: BodyError::Verifier(error),
        })
    }

    /// The payload, located with a few bounds-checked reads instead of the full verifier.
    pub fn payload(&self) -> Result<&'a [u8], crate::Error> {
        payload_of(self.body_bytes()).ok_or(crate::Error::InvalidBody {
            offset: self.offset(),
            detail: BodyError::Payload,
        })
    }
}

/// Finds the payload vector of a `Record` body with checked arithmetic only. `None` when any
/// offset points outside the body.
pub(crate) fn payload_of(body: &[u8]) -> Option<&[u8]> {
    let u32_at = |at: usize| -> Option<u32> {
        let bytes = body.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let u16_at = |at: usize| -> Option<u16> {
        let bytes = body.get(at..at.checked_add(2)?)?;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    };
    let table = u32_at(0)? as usize;
    let soffset = u32_at(table)? as i32;
    let vtable = usize::try_from(i64::try_from(table).ok()? - i64::from(soffset)).ok()?;
    let vtable_bytes = u16_at(vtable)? as usize;
    let slot_in_vtable = vt(F_PAYLOAD) as usize;
    if slot_in_vtable + 2 > vtable_bytes {
        return None;
    }
    let field = u16_at(vtable + slot_in_vtable)? as usize;
    if field == 0 {
        return None;
    }
    let slot = table.checked_add(field)?;
    let vector = slot.checked_add(u32_at(slot)? as usize)?;
    let len = u32_at(vector)? as usize;
    body.get(vector + 4..(vector + 4).checked_add(len)?)
}

/// Encodes bodies with a reused `FlatBufferBuilder`: the straightforward way to produce the same
/// schema, kept as the reference that tests compare [`encode_body`] against and that the
/// benchmarks measure it against. Allocates nothing per record once the builder has grown.
pub struct BuilderEncoder {
    builder: FlatBufferBuilder<'static>,
    properties: Vec<WIPOffset<fb::Property<'static>>>,
}

impl Default for BuilderEncoder {
    fn default() -> Self {
        BuilderEncoder {
            builder: FlatBufferBuilder::with_capacity(4096),
            properties: Vec::new(),
        }
    }
}

impl BuilderEncoder {
    /// Builds the body for `input`; the bytes stay valid until the next call.
    pub fn encode(&mut self, input: &RecordInput<'_>) -> &[u8] {
        self.builder.reset();
        self.properties.clear();
        let fbb = &mut self.builder;
        for (key, value) in input.properties {
            let args = fb::PropertyArgs {
                key: Some(fbb.create_string(key)),
                value: Some(fbb.create_string(value)),
            };
            self.properties.push(fb::Property::create(fbb, &args));
        }
        let properties = (!self.properties.is_empty()).then(|| fbb.create_vector(&self.properties));
        let mut string = |value: Option<&str>| value.map(|s| fbb.create_string(s));
        let message_id = string(input.message_id);
        let correlation_id = string(input.correlation_id);
        let content_type = string(input.content_type);
        let content_encoding = string(input.content_encoding);
        let connection_device_id = string(input.connection_device_id);
        let connection_module_id = string(input.connection_module_id);
        let auth_method = string(input.auth_method);
        let auth_generation_id = string(input.auth_generation_id);
        let message_source = string(input.message_source);
        let interface_id = string(input.interface_id);
        let component_name = string(input.component_name);
        let data_schema = string(input.data_schema);
        let output_name = string(input.output_name);
        let user_id = input.user_id.map(|bytes| fbb.create_vector(bytes));
        let payload = Some(fbb.create_vector(input.payload));
        let args = fb::RecordArgs {
            message_id,
            correlation_id,
            user_id,
            content_type,
            content_encoding,
            creation_time_ms: input.creation_time_ms,
            expiry_time_ms: input.expiry_time_ms,
            connection_device_id,
            connection_module_id,
            auth_method,
            auth_generation_id,
            message_source,
            properties,
            payload,
            interface_id,
            component_name,
            data_schema,
            output_name,
        };
        let root = fb::Record::create(fbb, &args);
        fbb.finish_minimal(root);
        fbb.finished_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_input<'a>(properties: &'a [(&'a str, &'a str)], payload: &'a [u8]) -> RecordInput<'a> {
        RecordInput {
            message_id: Some("m-1"),
            correlation_id: Some(""),
            user_id: Some(b"\x00\x01user"),
            content_type: Some("application/json"),
            content_encoding: Some("utf-8"),
            creation_time_ms: Some(-5),
            expiry_time_ms: Some(i64::MAX),
            connection_device_id: Some("device-7"),
            connection_module_id: Some("module"),
            auth_method: Some(r#"{"scope":"device","type":"sas","issuer":"iothub"}"#),
            auth_generation_id: Some("637000000000000000"),
            message_source: Some("Telemetry"),
            properties,
            payload,
            interface_id: Some("dtmi:azureiot:DeviceManagement:DeviceInformation;1"),
            component_name: Some("thermostat1"),
            data_schema: Some("dtmi:com:example:TemperatureController;2"),
            output_name: Some("alerts"),
        }
    }

    fn assert_decodes_to(body: &[u8], input: &RecordInput<'_>) {
        let record = fb::root_as_record(body).expect("verifier accepts the body");
        assert_eq!(record.message_id(), input.message_id);
        assert_eq!(record.correlation_id(), input.correlation_id);
        assert_eq!(record.user_id().map(|v| v.bytes()), input.user_id);
        assert_eq!(record.content_type(), input.content_type);
        assert_eq!(record.content_encoding(), input.content_encoding);
        assert_eq!(record.creation_time_ms(), input.creation_time_ms);
        assert_eq!(record.expiry_time_ms(), input.expiry_time_ms);
        assert_eq!(record.connection_device_id(), input.connection_device_id);
        assert_eq!(record.connection_module_id(), input.connection_module_id);
        assert_eq!(record.auth_method(), input.auth_method);
        assert_eq!(record.auth_generation_id(), input.auth_generation_id);
        assert_eq!(record.message_source(), input.message_source);
        assert_eq!(record.interface_id(), input.interface_id);
        assert_eq!(record.component_name(), input.component_name);
        assert_eq!(record.data_schema(), input.data_schema);
        assert_eq!(record.output_name(), input.output_name);
        let properties: Vec<(&str, &str)> = record
            .properties()
            .map(|v| v.iter().map(|p| (p.key(), p.value())).collect())
            .unwrap_or_default();
        assert_eq!(properties, input.properties);
        assert_eq!(record.payload().bytes(), input.payload);
        assert_eq!(payload_of(body), Some(input.payload));
    }

    fn encode(input: &RecordInput<'_>) -> Vec<u8> {
        // Encode at an 8-aligned position, as in a segment.
        let mut out = vec![0xAAu8; body_bytes(input)];
        encode_body(input, &mut out);
        out
    }

    #[test]
    fn empty_record_is_the_minimum_body_and_verifies() {
        // Setup: a record with nothing but an empty payload. Expectation: the smallest body,
        // accepted by the verifier, every optional field absent.
        let input = RecordInput::default();
        let body = encode(&input);
        assert_eq!(body.len(), BODY_BYTES_MIN);
        assert_decodes_to(&body, &input);
    }

    #[test]
    fn every_field_round_trips_through_the_generated_reader() {
        // Setup: every field set, properties with empty and non-ASCII strings, odd lengths so
        // that padding is exercised. Expectation: the generated accessors read back each value.
        let properties = [("k", "v"), ("", "é"), ("temperature", "21.5")];
        let input = full_input(&properties, b"payload-of-odd-length");
        assert_decodes_to(&encode(&input), &input);
    }

    #[test]
    fn each_later_field_alone_takes_the_long_vtable_and_round_trips() {
        // Setup: a payload-only record with exactly one of the fields added after the first
        // release. Expectation: each body is 8 bytes of vtable longer than the bare body plus
        // its string, verifies, and reads back only that field.
        let bare = RecordInput {
            payload: b"p",
            ..RecordInput::default()
        };
        let bare_bytes = body_bytes(&bare);
        let value = "abc";
        let inputs = [
            RecordInput {
                interface_id: Some(value),
                ..bare
            },
            RecordInput {
                component_name: Some(value),
                ..bare
            },
            RecordInput {
                data_schema: Some(value),
                ..bare
            },
            RecordInput {
                output_name: Some(value),
                ..bare
            },
        ];
        for input in &inputs {
            let body = encode(input);
            assert_eq!(
                body.len(),
                bare_bytes + (vtable_bytes(RECORD_FIELD_COUNT) - vtable_bytes(14)) + 4 + 8
            );
            assert_decodes_to(&body, input);
        }
    }

    /// The first segment of a partition written by the encoder as of commit 53c8997, before
    /// `interface_id`, `component_name`, `data_schema` and `output_name` existed (the same
    /// file the `schema_growth` integration test opens).
    const FIRST_RELEASE_SEGMENT: &[u8] =
        include_bytes!("../tests/fixtures/first_release/00000000000000000000.segment");

    /// The records of [`FIRST_RELEASE_SEGMENT`], as `(header, body)`.
    fn first_release_records() -> Vec<(RecordHeader, &'static [u8])> {
        let area = &FIRST_RELEASE_SEGMENT[64..];
        let mut records = Vec::new();
        let mut position = 0;
        loop {
            let expect = Expect {
                offset: position as u64,
                sequence: Some(records.len() as u64),
                enqueued_ms_min: None,
                verify_crc: true,
            };
            match check_record(area, position, expect) {
                Checked::Record { header, stride } => {
                    let body =
                        &area[position + RECORD_HEADER_BYTES..position + header.length as usize];
                    records.push((header, body));
                    position += stride;
                }
                Checked::End => return records,
                Checked::Bad(reason) => panic!("fixture record at {position}: {reason}"),
            }
        }
    }

    #[test]
    fn bodies_written_before_the_later_fields_read_back_with_them_absent() {
        // Setup: the three records of the checked-in first-release segment: every field of
        // that schema, a bare payload, every field again. Expectation: they verify and decode
        // with the current generated code, the later fields absent; encoding the same inputs
        // today produces the same bytes (no later field present: the short vtable).
        let records = first_release_records();
        assert_eq!(records.len(), 3);
        let properties = [("temperatureAlert", "false"), ("", "é")];
        let full = RecordInput {
            message_id: Some("msg-0001"),
            correlation_id: Some("corr-0001"),
            user_id: Some(b"\x00\x01user"),
            content_type: Some("application/json"),
            content_encoding: Some("utf-8"),
            creation_time_ms: Some(1_767_225_600_000),
            expiry_time_ms: Some(1_767_229_200_000),
            connection_device_id: Some("sensor-000042"),
            connection_module_id: Some("thermostat"),
            auth_method: Some(r#"{"scope":"device","type":"sas","issuer":"iothub"}"#),
            auth_generation_id: Some("638712345678901234"),
            message_source: Some("Telemetry"),
            properties: &properties,
            payload: b"{\"temperature\":21.5}",
            ..RecordInput::default()
        };
        let bare = RecordInput {
            payload: b"bare",
            ..RecordInput::default()
        };
        for ((_, body), input) in records.iter().zip([full, bare, full]) {
            assert_decodes_to(body, &input);
            let record = fb::root_as_record(body).expect("verifies");
            assert_eq!(
                (
                    record.interface_id(),
                    record.component_name(),
                    record.data_schema(),
                    record.output_name()
                ),
                (None, None, None, None)
            );
            assert_eq!(encode(&input), *body, "the first release's bytes");
        }
    }

    #[test]
    fn builder_encoding_of_the_same_input_decodes_identically() {
        // Setup: the reference builder and the forward encoder on the same input.
        // Expectation: both decode to the input (the bytes differ, the meaning does not).
        let properties = [("a", "1"), ("b", "2")];
        let input = full_input(&properties, &[7u8; 300]);
        let mut builder = BuilderEncoder::default();
        let reference = builder.encode(&input).to_vec();
        assert_decodes_to(&reference, &input);
        assert_decodes_to(&encode(&input), &input);
    }

    #[test]
    fn record_header_round_trips_and_checksums_the_body() {
        // Setup: encode a whole record. Expectation: check_record accepts it with the right
        // stride, and any flipped bit in the CRC-covered bytes is rejected.
        let input = full_input(&[], b"x");
        let body = body_bytes(&input);
        let mut out = vec![0u8; record_bytes(body)];
        let place = RecordPlace {
            sequence: SequenceNumber(9),
            offset: Offset(64),
            enqueued_ms: 1000,
        };
        let header = encode_record(&input, body, place, &mut out);
        let expect = Expect {
            offset: 64,
            sequence: Some(9),
            enqueued_ms_min: Some(1000),
            verify_crc: true,
        };
        assert_eq!(
            check_record(&out, 0, expect),
            Checked::Record {
                header,
                stride: out.len()
            }
        );
        for bit in [4 * 8, 9 * 8 + 3, (out.len() - 9) * 8] {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(check_record(&flipped, 0, expect), Checked::Bad(_)),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn zero_bytes_are_the_end_and_partial_headers_are_bad() {
        // Setup: zeros, and a few nonzero bytes shorter than a header.
        // Expectation: End for zeros, Bad for the partial header.
        let expect = Expect {
            offset: 0,
            sequence: None,
            enqueued_ms_min: None,
            verify_crc: true,
        };
        assert_eq!(check_record(&[0u8; 64], 0, expect), Checked::End);
        assert_eq!(check_record(&[0u8; 16], 0, expect), Checked::End);
        assert_eq!(
            check_record(&[1u8; 16], 0, expect),
            Checked::Bad(Corruption::PartialHeader)
        );
    }

    #[test]
    fn interleaved_crcs_equal_one_at_a_time_crcs() {
        // Setup: triples of buffers of every length from 0 to 40 bytes around a common
        // prefix, so that the interleaved part and the tails both vary.
        // Expectation: the same CRCs as the crc32c crate computes one buffer at a time.
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for a in 0..40 {
            for (b, c) in [(a, a), (a + 9, 3), (0, a + 17)] {
                let buffers = [&data[..a], &data[5..5 + b], &data[11..11 + c]];
                assert_eq!(
                    crc32c_x3(buffers),
                    buffers.map(crc32c::crc32c),
                    "lengths {a} {b} {c}"
                );
            }
        }
    }

    #[test]
    fn payload_lookup_rejects_out_of_bounds_offsets() {
        // Setup: a valid body cut short, and one with the root offset pointing past the end.
        // Expectation: None, never a panic.
        let body = encode(&full_input(&[], b"abc"));
        assert!(payload_of(&body[..body.len() - 1]).is_none());
        let mut bad = body.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(payload_of(&bad).is_none());
    }
}
