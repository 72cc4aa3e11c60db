//! AMQP 1.0 primitive encoding by hand, and a bounded validator for encoded values.
//!
//! The writer side exists because the pyamqp decoder in `azure-eventhub` is stricter than
//! AMQP: it wants every performative field present and a `00 53 <code>` descriptor, which the
//! derived serde encoders do not produce. Writing the handful of primitives we send by hand
//! is also what keeps event encoding far under a microsecond.
//!
//! The reader side, [`value_len`], walks one encoded value and returns its length without
//! building anything. Every byte handed to `serde_amqp` has passed through it first, which
//! gives two guarantees the decoder alone does not: nesting is at most [`DEPTH_MAX`] deep (so
//! a hostile frame cannot exhaust the stack through recursion), and every declared size and
//! count is consistent with the bytes actually present.
//!
//! ```text
//! fixed width          variable width            compound (list, map)        array
//! ┌────┬────────┐      ┌────┬─────┬───────┐      ┌────┬──────┬───────┬─────┐ ┌────┬──────┬───────┬──────┬─────┐
//! │code│ 0..16 B│      │code│ len │ bytes │      │code│ size │ count │items│ │code│ size │ count │ctor  │elems│
//! └────┴────────┘      └────┴─────┴───────┘      └────┴──────┴───────┴─────┘ └────┴──────┴───────┴──────┴─────┘
//!                      len: 1 B (0xa_) or 4 B (0xb_)   size/count: 1 B (0xc_) or 4 B (0xd_)
//! described value: 0x00 <descriptor value> <value>
//! ```

/// Format codes this crate writes or inspects.
pub mod code {
    /// A described value: descriptor then value.
    pub const DESCRIBED: u8 = 0x00;
    /// null.
    pub const NULL: u8 = 0x40;
    /// boolean true without a payload byte.
    pub const TRUE: u8 = 0x41;
    /// boolean false without a payload byte.
    pub const FALSE: u8 = 0x42;
    /// uint 0.
    pub const UINT0: u8 = 0x43;
    /// ulong 0.
    pub const ULONG0: u8 = 0x44;
    /// The empty list.
    pub const LIST0: u8 = 0x45;
    /// ubyte.
    pub const UBYTE: u8 = 0x50;
    /// uint in one byte.
    pub const SMALLUINT: u8 = 0x52;
    /// ulong in one byte; the descriptor code of every performative and section.
    pub const SMALLULONG: u8 = 0x53;
    /// boolean with a payload byte.
    pub const BOOLEAN: u8 = 0x56;
    /// ushort.
    pub const USHORT: u8 = 0x60;
    /// uint.
    pub const UINT: u8 = 0x70;
    /// int.
    pub const INT: u8 = 0x71;
    /// ulong.
    pub const ULONG: u8 = 0x80;
    /// long.
    pub const LONG: u8 = 0x81;
    /// timestamp, milliseconds since the Unix epoch.
    pub const TIMESTAMP: u8 = 0x83;
    /// uuid.
    pub const UUID: u8 = 0x98;
    /// binary, 1-byte length.
    pub const VBIN8: u8 = 0xa0;
    /// string, 1-byte length.
    pub const STR8: u8 = 0xa1;
    /// symbol, 1-byte length.
    pub const SYM8: u8 = 0xa3;
    /// binary, 4-byte length.
    pub const VBIN32: u8 = 0xb0;
    /// string, 4-byte length.
    pub const STR32: u8 = 0xb1;
    /// symbol, 4-byte length.
    pub const SYM32: u8 = 0xb3;
    /// list, 1-byte size and count.
    pub const LIST8: u8 = 0xc0;
    /// map, 1-byte size and count.
    pub const MAP8: u8 = 0xc1;
    /// list, 4-byte size and count.
    pub const LIST32: u8 = 0xd0;
    /// map, 4-byte size and count.
    pub const MAP32: u8 = 0xd1;
    /// array, 1-byte size and count.
    pub const ARRAY8: u8 = 0xe0;
    /// array, 4-byte size and count.
    pub const ARRAY32: u8 = 0xf0;
}

/// The deepest nesting of compound and described values [`value_len`] accepts. Real frames
/// nest four levels at most (attach → source → filter map → described filter).
pub const DEPTH_MAX: usize = 32;

/// The most elements a list, map or array may declare. Matches serde_amqp's own cap on
/// zero-width array elements; real frames carry a few dozen at most.
pub const COUNT_MAX: usize = 65_536;

/// Why an encoded value is not acceptable. Always a decode error for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    /// The value runs past the end of the input.
    Truncated,
    /// A format code that AMQP 1.0 does not define.
    UnknownFormatCode(u8),
    /// Nesting deeper than [`DEPTH_MAX`].
    TooDeep,
    /// A size or count field that disagrees with the content, or exceeds [`COUNT_MAX`].
    BadSize,
}

impl ValueError {
    /// A short phrase for error descriptions.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Truncated => "value truncated",
            Self::UnknownFormatCode(_) => "unknown format code",
            Self::TooDeep => "values nested too deeply",
            Self::BadSize => "size or count inconsistent with content",
        }
    }
}

/// The length in bytes of the encoded value at the start of `bytes`, after checking that it
/// is well-formed to the depth and count limits. Never panics.
pub fn value_len(bytes: &[u8]) -> Result<usize, ValueError> {
    value_len_at(bytes, 0)
}

fn value_len_at(bytes: &[u8], depth: usize) -> Result<usize, ValueError> {
    if depth > DEPTH_MAX {
        return Err(ValueError::TooDeep);
    }
    let (&constructor, rest) = bytes.split_first().ok_or(ValueError::Truncated)?;
    if constructor == code::DESCRIBED {
        let descriptor = value_len_at(rest, depth + 1)?;
        let value = value_len_at(&rest[descriptor..], depth + 1)?;
        return Ok(1 + descriptor + value);
    }
    Ok(1 + body_len(constructor, rest, depth)?)
}

/// The number of bytes after the constructor `constructor` that belong to the value.
fn body_len(constructor: u8, rest: &[u8], depth: usize) -> Result<usize, ValueError> {
    let len = match constructor {
        0x40..=0x45 => 0,
        0x50..=0x56 => 1,
        0x60 | 0x61 => 2,
        0x70..=0x74 => 4,
        0x80..=0x84 => 8,
        0x94 | 0x98 => 16,
        0xa0 | 0xa1 | 0xa3 => 1 + usize::from(*rest.first().ok_or(ValueError::Truncated)?),
        0xb0 | 0xb1 | 0xb3 => 4 + read_u32(rest)? as usize,
        0xc0 | 0xc1 => {
            let size = usize::from(*rest.first().ok_or(ValueError::Truncated)?);
            let content = rest.get(1..1 + size).ok_or(ValueError::Truncated)?;
            check_compound(constructor == 0xc1, content, 1, depth)?;
            1 + size
        }
        0xd0 | 0xd1 => {
            let size = read_u32(rest)? as usize;
            let content = rest.get(4..4 + size).ok_or(ValueError::Truncated)?;
            check_compound(constructor == 0xd1, content, 4, depth)?;
            4 + size
        }
        0xe0 => {
            let size = usize::from(*rest.first().ok_or(ValueError::Truncated)?);
            let content = rest.get(1..1 + size).ok_or(ValueError::Truncated)?;
            check_array(content, 1, depth)?;
            1 + size
        }
        0xf0 => {
            let size = read_u32(rest)? as usize;
            let content = rest.get(4..4 + size).ok_or(ValueError::Truncated)?;
            check_array(content, 4, depth)?;
            4 + size
        }
        other => return Err(ValueError::UnknownFormatCode(other)),
    };
    if rest.len() < len {
        return Err(ValueError::Truncated);
    }
    Ok(len)
}

fn read_u32(bytes: &[u8]) -> Result<u32, ValueError> {
    let word: [u8; 4] = bytes
        .get(..4)
        .ok_or(ValueError::Truncated)?
        .try_into()
        .map_err(|_| ValueError::Truncated)?;
    Ok(u32::from_be_bytes(word))
}

fn read_count(content: &[u8], width: usize) -> Result<(usize, &[u8]), ValueError> {
    if width == 1 {
        let (&count, items) = content.split_first().ok_or(ValueError::BadSize)?;
        Ok((usize::from(count), items))
    } else {
        let count = read_u32(content).map_err(|_| ValueError::BadSize)? as usize;
        Ok((count, &content[4..]))
    }
}

/// Checks that `content` (count field then items) holds exactly `count` values.
fn check_compound(
    is_map: bool,
    content: &[u8],
    width: usize,
    depth: usize,
) -> Result<(), ValueError> {
    let (count, mut items) = read_count(content, width)?;
    if count > COUNT_MAX || count > items.len() || (is_map && count % 2 != 0) {
        return Err(ValueError::BadSize);
    }
    for _ in 0..count {
        let len = value_len_at(items, depth + 1)?;
        items = &items[len..];
    }
    if items.is_empty() {
        Ok(())
    } else {
        Err(ValueError::BadSize)
    }
}

/// Checks that `content` (count, element constructor, elements) holds exactly `count`
/// elements sharing the constructor.
fn check_array(content: &[u8], width: usize, depth: usize) -> Result<(), ValueError> {
    let (count, rest) = read_count(content, width)?;
    if count > COUNT_MAX {
        return Err(ValueError::BadSize);
    }
    // The element constructor: a format code, or 0x00 descriptor format-code.
    let (&first, after_first) = rest.split_first().ok_or(ValueError::Truncated)?;
    let (element_code, mut items) = if first == code::DESCRIBED {
        let descriptor = value_len_at(after_first, depth + 1)?;
        let after_descriptor = &after_first[descriptor..];
        let (&element_code, items) = after_descriptor
            .split_first()
            .ok_or(ValueError::Truncated)?;
        (element_code, items)
    } else {
        (first, after_first)
    };
    if element_code == code::DESCRIBED {
        return Err(ValueError::UnknownFormatCode(element_code));
    }
    for _ in 0..count {
        let len = body_len(element_code, items, depth + 1)?;
        items = &items[len..];
    }
    if items.is_empty() {
        Ok(())
    } else {
        Err(ValueError::BadSize)
    }
}

/// Splits the list at the start of `bytes` (list0, list8 or list32) into its encoded fields,
/// after validating it. Returns `None` if the value is not a list.
pub fn list_fields(bytes: &[u8]) -> Result<Option<Vec<&[u8]>>, ValueError> {
    let total = value_len(bytes)?;
    let (count, mut items) = match bytes[0] {
        code::LIST0 => return Ok(Some(Vec::new())),
        code::LIST8 => (usize::from(bytes[2]), &bytes[3..total]),
        code::LIST32 => (read_u32(&bytes[5..])? as usize, &bytes[9..total]),
        _ => return Ok(None),
    };
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let len = value_len(items)?;
        fields.push(&items[..len]);
        items = &items[len..];
    }
    Ok(Some(fields))
}

/// If `bytes` starts with a described value whose descriptor is a ulong (`00 53 c` or
/// `00 80 <8 bytes>`), its descriptor code and the offset of the described value.
pub fn numeric_descriptor(bytes: &[u8]) -> Option<(u64, usize)> {
    match bytes {
        [code::DESCRIBED, code::SMALLULONG, c, ..] => Some((u64::from(*c), 3)),
        [code::DESCRIBED, code::ULONG0, ..] => Some((0, 2)),
        [code::DESCRIBED, code::ULONG, rest @ ..] if rest.len() >= 8 => {
            let word: [u8; 8] = rest[..8].try_into().ok()?;
            Some((u64::from_be_bytes(word), 10))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Writer.
// ---------------------------------------------------------------------------------------------

/// Appends `null`.
#[inline]
pub fn put_null(buf: &mut Vec<u8>) {
    buf.push(code::NULL);
}

/// Appends a boolean in its one-byte form.
#[inline]
pub fn put_bool(buf: &mut Vec<u8>, value: bool) {
    buf.push(if value { code::TRUE } else { code::FALSE });
}

/// Appends a ubyte.
#[inline]
pub fn put_ubyte(buf: &mut Vec<u8>, value: u8) {
    buf.extend_from_slice(&[code::UBYTE, value]);
}

/// Appends a ushort.
#[inline]
pub fn put_ushort(buf: &mut Vec<u8>, value: u16) {
    buf.push(code::USHORT);
    buf.extend_from_slice(&value.to_be_bytes());
}

/// Appends a uint in its smallest encoding.
#[inline]
pub fn put_uint(buf: &mut Vec<u8>, value: u32) {
    if value == 0 {
        buf.push(code::UINT0);
    } else if let Ok(small) = u8::try_from(value) {
        buf.extend_from_slice(&[code::SMALLUINT, small]);
    } else {
        buf.push(code::UINT);
        buf.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a ulong in its smallest encoding.
#[inline]
pub fn put_ulong(buf: &mut Vec<u8>, value: u64) {
    if value == 0 {
        buf.push(code::ULONG0);
    } else if let Ok(small) = u8::try_from(value) {
        buf.extend_from_slice(&[code::SMALLULONG, small]);
    } else {
        buf.push(code::ULONG);
        buf.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends an int in its four-byte form (0x71): the IoT Hub service SDK refuses anything
/// else for `status-code`.
#[inline]
pub fn put_int(buf: &mut Vec<u8>, value: i32) {
    buf.push(code::INT);
    buf.extend_from_slice(&value.to_be_bytes());
}

/// Appends a long in its eight-byte form (0x81).
#[inline]
pub fn put_long(buf: &mut Vec<u8>, value: i64) {
    buf.push(code::LONG);
    buf.extend_from_slice(&value.to_be_bytes());
}

/// Appends a timestamp in milliseconds since the Unix epoch.
#[inline]
pub fn put_timestamp(buf: &mut Vec<u8>, milliseconds: i64) {
    buf.push(code::TIMESTAMP);
    buf.extend_from_slice(&milliseconds.to_be_bytes());
}

/// Appends a uuid.
#[inline]
pub fn put_uuid(buf: &mut Vec<u8>, value: &[u8; 16]) {
    buf.push(code::UUID);
    buf.extend_from_slice(value);
}

#[inline]
fn put_variable(buf: &mut Vec<u8>, short_code: u8, long_code: u8, bytes: &[u8]) {
    if let Ok(len) = u8::try_from(bytes.len()) {
        buf.extend_from_slice(&[short_code, len]);
    } else {
        buf.push(long_code);
        buf.extend_from_slice(&len_u32(bytes.len()).to_be_bytes());
    }
    buf.extend_from_slice(bytes);
}

/// Appends a binary.
#[inline]
pub fn put_binary(buf: &mut Vec<u8>, value: &[u8]) {
    put_variable(buf, code::VBIN8, code::VBIN32, value);
}

/// Appends a UTF-8 string.
#[inline]
pub fn put_str(buf: &mut Vec<u8>, value: &str) {
    put_variable(buf, code::STR8, code::STR32, value.as_bytes());
}

/// Appends a symbol. Symbols are ASCII by definition; the caller's strings are written as
/// given.
#[inline]
pub fn put_sym(buf: &mut Vec<u8>, value: &str) {
    put_variable(buf, code::SYM8, code::SYM32, value.as_bytes());
}

/// Appends an already-encoded value, or `null` when there is none.
#[inline]
pub fn put_raw(buf: &mut Vec<u8>, encoded: Option<&[u8]>) {
    match encoded {
        Some(bytes) if !bytes.is_empty() => buf.extend_from_slice(bytes),
        _ => put_null(buf),
    }
}

/// Appends an array of symbols (array8 or array32 of sym8 or sym32).
pub fn put_sym_array(buf: &mut Vec<u8>, symbols: &[&str]) {
    let wide = symbols.iter().any(|s| s.len() > usize::from(u8::MAX));
    let element_bytes: usize = symbols
        .iter()
        .map(|s| s.len() + if wide { 4 } else { 1 })
        .sum();
    // Content = count + element constructor + elements.
    let short = u8::try_from(element_bytes + 2).is_ok() && u8::try_from(symbols.len()).is_ok();
    if short {
        buf.extend_from_slice(&[code::ARRAY8, (element_bytes + 2) as u8, symbols.len() as u8]);
    } else {
        buf.push(code::ARRAY32);
        buf.extend_from_slice(&len_u32(element_bytes + 5).to_be_bytes());
        buf.extend_from_slice(&len_u32(symbols.len()).to_be_bytes());
    }
    buf.push(if wide { code::SYM32 } else { code::SYM8 });
    for symbol in symbols {
        if wide {
            buf.extend_from_slice(&len_u32(symbol.len()).to_be_bytes());
        } else {
            buf.push(symbol.len() as u8);
        }
        buf.extend_from_slice(symbol.as_bytes());
    }
}

/// Appends the `00 53 <code>` prefix of a described type with a small-ulong descriptor.
#[inline]
pub fn put_descriptor(buf: &mut Vec<u8>, descriptor: u8) {
    buf.extend_from_slice(&[code::DESCRIBED, code::SMALLULONG, descriptor]);
}

/// A list or map being written: [`Compound::begin_list`] or [`Compound::begin_map`]
/// reserves a 32-bit header, and [`Compound::end`] fills it in, or shrinks it to the 8-bit
/// form when the content fits.
///
/// # Invariants
/// Between `begin` and `end`, exactly `count` complete values are appended after the header.
#[derive(Debug)]
#[must_use = "a compound must be ended to be well-formed"]
pub struct Compound {
    start: usize,
    is_map: bool,
}

/// Size of the reserved header: constructor, 4-byte size, 4-byte count.
const WIDE_HEADER: usize = 9;
/// Size of the short header: constructor, 1-byte size, 1-byte count.
const SHORT_HEADER: usize = 3;

impl Compound {
    /// Starts a list.
    #[inline]
    pub fn begin_list(buf: &mut Vec<u8>) -> Self {
        Self::begin(buf, false)
    }

    /// Starts a map; `count` in [`Compound::end`] then counts keys and values.
    #[inline]
    pub fn begin_map(buf: &mut Vec<u8>) -> Self {
        Self::begin(buf, true)
    }

    #[inline]
    fn begin(buf: &mut Vec<u8>, is_map: bool) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&[0; WIDE_HEADER]);
        Self { start, is_map }
    }

    /// Finishes the compound holding `count` encoded values.
    #[inline]
    pub fn end(self, buf: &mut Vec<u8>, count: usize) {
        let content_start = self.start + WIDE_HEADER;
        debug_assert!(buf.len() >= content_start, "compound header overwritten");
        let content = buf.len() - content_start;
        if content < usize::from(u8::MAX) && u8::try_from(count).is_ok() {
            buf[self.start] = if self.is_map { code::MAP8 } else { code::LIST8 };
            buf[self.start + 1] = (content + 1) as u8;
            buf[self.start + 2] = count as u8;
            buf.copy_within(content_start.., self.start + SHORT_HEADER);
            buf.truncate(buf.len() - (WIDE_HEADER - SHORT_HEADER));
        } else {
            buf[self.start] = if self.is_map {
                code::MAP32
            } else {
                code::LIST32
            };
            buf[self.start + 1..self.start + 5]
                .copy_from_slice(&len_u32(content + 4).to_be_bytes());
            buf[self.start + 5..self.start + 9].copy_from_slice(&len_u32(count).to_be_bytes());
        }
    }
}

/// A length as the u32 the wire format carries. Frames are bounded by a u32 size, so a longer
/// value cannot be sent at all; callers bound their inputs well below that.
#[inline]
pub fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("encoded values are bounded by the u32 frame size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_uses_the_smallest_encoding() {
        let mut buf = Vec::new();
        put_uint(&mut buf, 0);
        put_uint(&mut buf, 7);
        put_uint(&mut buf, 0x1_0000);
        assert_eq!(buf, [0x43, 0x52, 7, 0x70, 0, 1, 0, 0]);
    }

    #[test]
    fn short_compound_shrinks_to_list8() {
        let mut buf = vec![0xee];
        let list = Compound::begin_list(&mut buf);
        put_null(&mut buf);
        list.end(&mut buf, 1);
        assert_eq!(buf, [0xee, 0xc0, 0x02, 0x01, 0x40]);
        assert_eq!(value_len(&buf[1..]), Ok(4));
    }

    #[test]
    fn long_compound_stays_list32() {
        let mut buf = Vec::new();
        let list = Compound::begin_list(&mut buf);
        put_binary(&mut buf, &[7; 300]);
        list.end(&mut buf, 1);
        assert_eq!(&buf[..9], &[0xd0, 0, 0, 1, 0x35, 0, 0, 0, 1]);
        assert_eq!(value_len(&buf), Ok(buf.len()));
    }

    #[test]
    fn encodings_match_serde_amqp() {
        let mut buf = Vec::new();
        put_str(&mut buf, "hello");
        assert_eq!(
            buf,
            serde_amqp::to_vec(&"hello".to_string()).expect("encodes")
        );
        buf.clear();
        put_long(&mut buf, -5);
        assert_eq!(serde_amqp::from_slice::<i64>(&buf).expect("decodes"), -5);
        buf.clear();
        put_sym_array(&mut buf, &["a", "bc"]);
        let decoded: serde_amqp::primitives::Array<serde_amqp::primitives::Symbol> =
            serde_amqp::from_slice(&buf).expect("decodes");
        assert_eq!(decoded.0.len(), 2);
        assert_eq!(value_len(&buf), Ok(buf.len()));
    }

    #[test]
    fn value_len_rejects_deep_nesting() {
        let mut buf = Vec::new();
        for _ in 0..(DEPTH_MAX + 2) {
            buf.extend_from_slice(&[code::DESCRIBED, code::NULL]);
        }
        buf.push(code::NULL);
        assert_eq!(value_len(&buf), Err(ValueError::TooDeep));
    }

    #[test]
    fn value_len_rejects_count_larger_than_content() {
        // list8 of size 2 claiming 5 elements.
        assert_eq!(
            value_len(&[0xc0, 0x02, 0x05, 0x40]),
            Err(ValueError::BadSize)
        );
        // array32 of one million nulls in 10 bytes.
        assert_eq!(
            value_len(&[0xf0, 0, 0, 0, 5, 0, 0x0f, 0x42, 0x40, 0x40]),
            Err(ValueError::BadSize)
        );
    }

    #[test]
    fn value_len_walks_described_arrays() {
        // array8 of two described symbols sharing the constructor 00 53 01 a3.
        let bytes = [
            0xe0, 0x0a, 0x02, 0x00, 0x53, 0x01, 0xa3, 0x01, b'a', 0x02, b'b', b'c',
        ];
        assert_eq!(value_len(&bytes), Ok(bytes.len()));
    }

    #[test]
    fn list_fields_splits_each_field() {
        let bytes = [0xc0, 0x05, 0x03, 0x40, 0x52, 0x07, 0x41];
        let fields = list_fields(&bytes).expect("valid").expect("a list");
        assert_eq!(fields, vec![&[0x40][..], &[0x52, 0x07][..], &[0x41][..]]);
    }
}
