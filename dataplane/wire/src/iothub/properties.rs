//! The property bag at the end of a telemetry or C2D topic:
//! `%24.mid=mid-1&%24.ct=application%2Fjson&a%20b=x%2Fy%26z&b=2`.
//!
//! Pairs are split on `&`, then on the first `=`; names and values are percent-decoded (`+`
//! stays `+`, as with Python's `unquote`), and bytes that do not decode to UTF-8 become
//! U+FFFD, as `unquote` does. A name without `=` has the empty value; empty pairs (`&&`) are
//! skipped. Names that decode to a `$.` key are [`SystemProperty`]s; everything else is an
//! application property, kept in order.
//!
//! Nothing is allocated unless a name or value holds a `%` escape (and not even then for the
//! content types the SDK escapes, such as `application%2Fjson`): [`MessageProperties`] borrows
//! from the topic, and application properties are decoded as they are iterated.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::utf8_percent_encode;

use super::{Error, expiry};
use crate::sas::QUOTE_SAFE_NOTHING;

/// The largest message IoT Hub accepts, counted as [`MessageProperties::message_bytes`]
/// counts (D2: 256 KiB).
pub const MESSAGE_BYTES_MAX: usize = 262_144;

/// The most properties, system and application together, one bag may hold. IoT Hub
/// documents no count; this one bounds the work per message.
pub const PROPERTY_COUNT_MAX: usize = 128;

/// The longest property name after percent-decoding. IoT Hub documents no bound; names are
/// short keys in practice.
pub const PROPERTY_NAME_BYTES_MAX: usize = 1_024;

/// The longest property value after percent-decoding. IoT Hub documents no bound beyond the
/// message's; this one keeps a single value from taking most of a 64 KiB topic.
pub const PROPERTY_VALUE_BYTES_MAX: usize = 16_384;

/// The C2D property that asks for delivery feedback: `none`, `positive`, `negative`, `full`.
/// The device SDK reads it as the message's `ack`; it is not a `$.` key.
pub const ACK_PROPERTY: &str = "iothub-ack";

/// The system properties a topic can carry, by their `$.` keys. The device SDK sends the first
/// eight on telemetry; `$.to` comes with C2D; `$.ctime` and `$.sub` are what Azure's
/// embedded C SDK sends for the creation time and the Plug and Play component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemProperty {
    /// `$.mid`, message-id.
    MessageId,
    /// `$.cid`, correlation-id.
    CorrelationId,
    /// `$.uid`, user-id.
    UserId,
    /// `$.ct`, content-type, e.g. `application/json`.
    ContentType,
    /// `$.ce`, content-encoding, e.g. `utf-8`.
    ContentEncoding,
    /// `$.exp`, absolute-expiry-time as ISO-8601; see [`MessageProperties::expiry_ms`].
    ExpiryTimeUtc,
    /// `$.on`, the output name a module sends to.
    OutputName,
    /// `$.ifid`, the interface id; the SDK's security messages set it.
    InterfaceId,
    /// `$.to`, the destination, on C2D messages.
    To,
    /// `$.ctime`, iothub-creation-time-utc.
    CreationTimeUtc,
    /// `$.sub`, dt-subject: the Plug and Play component name.
    ComponentName,
}

impl SystemProperty {
    /// How many there are.
    pub const COUNT: usize = 11;

    /// All of them, in the order [`MessageProperties::system_properties`] yields them.
    pub const ALL: [Self; Self::COUNT] = [
        Self::MessageId,
        Self::CorrelationId,
        Self::UserId,
        Self::ContentType,
        Self::ContentEncoding,
        Self::ExpiryTimeUtc,
        Self::OutputName,
        Self::InterfaceId,
        Self::To,
        Self::CreationTimeUtc,
        Self::ComponentName,
    ];

    /// The key, decoded: `$.mid`.
    pub const fn key(self) -> &'static str {
        match self {
            Self::MessageId => "$.mid",
            Self::CorrelationId => "$.cid",
            Self::UserId => "$.uid",
            Self::ContentType => "$.ct",
            Self::ContentEncoding => "$.ce",
            Self::ExpiryTimeUtc => "$.exp",
            Self::OutputName => "$.on",
            Self::InterfaceId => "$.ifid",
            Self::To => "$.to",
            Self::CreationTimeUtc => "$.ctime",
            Self::ComponentName => "$.sub",
        }
    }

    /// The key as clients write it in a topic: `%24.mid`.
    pub const fn encoded_key(self) -> &'static str {
        match self {
            Self::MessageId => "%24.mid",
            Self::CorrelationId => "%24.cid",
            Self::UserId => "%24.uid",
            Self::ContentType => "%24.ct",
            Self::ContentEncoding => "%24.ce",
            Self::ExpiryTimeUtc => "%24.exp",
            Self::OutputName => "%24.on",
            Self::InterfaceId => "%24.ifid",
            Self::To => "%24.to",
            Self::CreationTimeUtc => "%24.ctime",
            Self::ComponentName => "%24.sub",
        }
    }

    /// The system property an encoded key names, however it is escaped (`$.mid`, `%24.mid`,
    /// `%24%2Emid`), without allocating.
    fn from_encoded_key(key: &str) -> Option<Self> {
        /// The longest key, `$.ctime`.
        const KEY_BYTES_MAX: usize = 7;
        // The two spellings clients use, matched without decoding.
        let plain_suffix = key
            .strip_prefix("%24.")
            .or_else(|| key.strip_prefix("$."))
            .filter(|suffix| !suffix.contains('%'));
        if let Some(suffix) = plain_suffix {
            return Self::from_suffix(suffix.as_bytes());
        }
        if !key.starts_with(['$', '%']) || key.len() > 3 * KEY_BYTES_MAX {
            return None;
        }
        let mut decoded = [0u8; KEY_BYTES_MAX];
        let mut len = 0;
        for byte in Decoded::new(key.as_bytes()) {
            *decoded.get_mut(len)? = byte;
            len += 1;
        }
        Self::from_key(&decoded[..len])
    }

    /// The system property a decoded key names.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        Self::from_suffix(key.strip_prefix(b"$.")?)
    }

    fn from_suffix(suffix: &[u8]) -> Option<Self> {
        Some(match suffix {
            b"mid" => Self::MessageId,
            b"cid" => Self::CorrelationId,
            b"uid" => Self::UserId,
            b"ct" => Self::ContentType,
            b"ce" => Self::ContentEncoding,
            b"exp" => Self::ExpiryTimeUtc,
            b"on" => Self::OutputName,
            b"ifid" => Self::InterfaceId,
            b"to" => Self::To,
            b"ctime" => Self::CreationTimeUtc,
            b"sub" => Self::ComponentName,
            _ => return None,
        })
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SystemProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A parsed property bag.
///
/// # Invariants
///
/// The bag holds at most [`PROPERTY_COUNT_MAX`] pairs, every name is non-empty and at most
/// [`PROPERTY_NAME_BYTES_MAX`] decoded bytes, every value at most
/// [`PROPERTY_VALUE_BYTES_MAX`], and no system property appears twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageProperties<'a> {
    raw: &'a str,
    system: [Option<Cow<'a, str>>; SystemProperty::COUNT],
    application_count: usize,
    /// Decoded names plus values, for the size IoT Hub counts.
    application_bytes: usize,
}

impl<'a> MessageProperties<'a> {
    /// Parses the bag, e.g. the `properties` of [`super::PublishTopic::Telemetry`]. May be
    /// empty.
    pub fn parse(raw: &'a str) -> Result<Self, Error> {
        let mut parsed = Self {
            raw,
            system: Default::default(),
            application_count: 0,
            application_bytes: 0,
        };
        for (index, pair) in Pairs::new(raw).enumerate() {
            if index == PROPERTY_COUNT_MAX {
                return Err(Error::TooManyProperties {
                    count: Pairs::new(raw).count(),
                    max: PROPERTY_COUNT_MAX,
                });
            }
            if pair.name.is_empty() {
                return Err(Error::EmptyPropertyName);
            }
            let name_bytes = decoded_len(pair.name, pair.name_escaped);
            if name_bytes > PROPERTY_NAME_BYTES_MAX {
                return Err(Error::PropertyNameTooLong {
                    bytes: name_bytes,
                    max: PROPERTY_NAME_BYTES_MAX,
                });
            }
            let value_bytes = decoded_len(pair.value, pair.value_escaped);
            if value_bytes > PROPERTY_VALUE_BYTES_MAX {
                return Err(Error::PropertyValueTooLong {
                    bytes: value_bytes,
                    max: PROPERTY_VALUE_BYTES_MAX,
                });
            }
            if let Some(property) = SystemProperty::from_encoded_key(pair.name) {
                let slot = &mut parsed.system[property.index()];
                if slot.is_some() {
                    return Err(Error::DuplicateSystemProperty(property));
                }
                *slot = Some(decode(pair.value, pair.value_escaped));
            } else {
                parsed.application_count += 1;
                parsed.application_bytes += name_bytes + value_bytes;
            }
        }
        Ok(parsed)
    }

    /// The bag as it appeared in the topic.
    pub const fn raw(&self) -> &'a str {
        self.raw
    }

    /// A system property's decoded value.
    pub fn get(&self, property: SystemProperty) -> Option<&str> {
        self.system[property.index()].as_deref()
    }

    /// The system properties present, in [`SystemProperty::ALL`] order.
    pub fn system_properties(&self) -> impl Iterator<Item = (SystemProperty, &str)> {
        SystemProperty::ALL
            .into_iter()
            .filter_map(|property| Some((property, self.get(property)?)))
    }

    /// The application properties, decoded, in the order they appeared.
    pub fn application(&self) -> ApplicationProperties<'a> {
        ApplicationProperties {
            pairs: Pairs::new(self.raw),
            remaining: self.application_count,
        }
    }

    /// How many application properties there are.
    pub const fn application_count(&self) -> usize {
        self.application_count
    }

    /// The message's size as IoT Hub counts it (D2): the body, the system property values,
    /// and the application property names and values, all after percent-decoding.
    pub fn message_bytes(&self, body_bytes: usize) -> usize {
        let system_bytes: usize = self.system.iter().flatten().map(|value| value.len()).sum();
        body_bytes + system_bytes + self.application_bytes
    }

    /// [`MessageProperties::message_bytes`], refused above [`MESSAGE_BYTES_MAX`].
    pub fn check_message_size(&self, body_bytes: usize) -> Result<usize, Error> {
        let bytes = self.message_bytes(body_bytes);
        if bytes > MESSAGE_BYTES_MAX {
            return Err(Error::MessageTooLarge {
                bytes,
                max: MESSAGE_BYTES_MAX,
            });
        }
        Ok(bytes)
    }

    /// `$.exp` in milliseconds since the Unix epoch, if present.
    pub fn expiry_ms(&self) -> Option<Result<i64, Error>> {
        self.get(SystemProperty::ExpiryTimeUtc)
            .map(expiry::parse_expiry_ms)
    }
}

/// The application properties of a [`MessageProperties`], decoded one at a time.
#[derive(Debug, Clone)]
pub struct ApplicationProperties<'a> {
    pairs: Pairs<'a>,
    remaining: usize,
}

impl<'a> Iterator for ApplicationProperties<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        for pair in self.pairs.by_ref() {
            if SystemProperty::from_encoded_key(pair.name).is_none() {
                self.remaining -= 1;
                return Some((
                    decode(pair.name, pair.name_escaped),
                    decode(pair.value, pair.value_escaped),
                ));
            }
        }
        unreachable!("parse counted more application properties than the bag holds")
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for ApplicationProperties<'_> {}

/// One `name=value` of a bag; `name` alone has the empty value.
#[derive(Debug, Clone, Copy)]
struct Pair<'a> {
    name: &'a str,
    value: &'a str,
    /// Whether `name` holds a `%`, so decoding it can skip the scan.
    name_escaped: bool,
    value_escaped: bool,
}

/// The non-empty pairs of a bag, found in one pass over its bytes.
#[derive(Debug, Clone)]
struct Pairs<'a> {
    raw: &'a str,
    at: usize,
}

impl<'a> Pairs<'a> {
    fn new(raw: &'a str) -> Self {
        Self { raw, at: 0 }
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Pair<'a>;

    fn next(&mut self) -> Option<Pair<'a>> {
        let bytes = self.raw.as_bytes();
        while self.at < bytes.len() {
            let start = self.at;
            let mut equals = None;
            let mut name_escaped = false;
            let mut value_escaped = false;
            while let Some(&byte) = bytes.get(self.at) {
                match byte {
                    b'&' => break,
                    b'=' if equals.is_none() => equals = Some(self.at),
                    b'%' if equals.is_none() => name_escaped = true,
                    b'%' => value_escaped = true,
                    _ => {}
                }
                self.at += 1;
            }
            let end = self.at;
            self.at += 1;
            if start == end {
                continue;
            }
            // '&' and '=' are ASCII, so every cut falls on a character boundary.
            let (name, value) = match equals {
                Some(equals) => (&self.raw[start..equals], &self.raw[equals + 1..end]),
                None => (&self.raw[start..end], ""),
            };
            return Some(Pair {
                name,
                value,
                name_escaped,
                value_escaped,
            });
        }
        None
    }
}

/// The length of `encoded` once percent-decoded; `escaped` says whether it holds a `%`.
fn decoded_len(encoded: &str, escaped: bool) -> usize {
    if escaped {
        Decoded::new(encoded.as_bytes()).count()
    } else {
        encoded.len()
    }
}

/// Percent-decodes a name or value outside a property bag (a method or input name, a user
/// name's query value), with the same rules as the bag.
pub(crate) fn percent_decode(encoded: &str) -> Cow<'_, str> {
    decode(encoded, encoded.contains('%'))
}

/// Escaped values common enough to decode without allocating: the SDK encodes the `/` of
/// every content type.
const WELL_KNOWN_VALUES: [(&str, &str); 4] = [
    ("application%2Fjson", "application/json"),
    ("text%2Fplain", "text/plain"),
    ("application%2Foctet-stream", "application/octet-stream"),
    ("application%2Fxml", "application/xml"),
];

/// Percent-decodes, borrowing when nothing is escaped (`escaped` says whether `encoded` holds
/// a `%`). A `%` not followed by two hex digits stays as it is, and bytes that are not UTF-8
/// become U+FFFD, as Python's `unquote` does.
fn decode(encoded: &str, escaped: bool) -> Cow<'_, str> {
    if !escaped {
        return Cow::Borrowed(encoded);
    }
    if let Some((_, decoded)) = WELL_KNOWN_VALUES
        .iter()
        .find(|(known, _)| *known == encoded)
    {
        return Cow::Borrowed(decoded);
    }
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    decoded.extend(Decoded::new(bytes));
    if decoded.len() == bytes.len() {
        // Only stray '%'s: nothing was decoded.
        return Cow::Borrowed(encoded);
    }
    match String::from_utf8(decoded) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
    }
}

/// The bytes of a percent-encoded string, decoded.
struct Decoded<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoded<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
}

impl Iterator for Decoded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&byte, rest) = self.bytes.split_first()?;
        if byte == b'%'
            && let [high, low, rest @ ..] = rest
            && let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low))
        {
            self.bytes = rest;
            return Some(high << 4 | low);
        }
        self.bytes = rest;
        Some(byte)
    }
}

const fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Appends `name=value` pairs to a topic, percent-encoding everything but ASCII letters,
/// digits and `_.-~` (Python's `quote(safe="")`, as the SDK does), so values may hold `/`,
/// `&`, `=`, spaces and any Unicode. Made by the topic builders such as
/// [`super::write_c2d_topic`].
///
/// An application property named like a system key (`$.mid`) reads back as that system
/// property.
#[derive(Debug)]
pub struct PropertyWriter<'o> {
    out: &'o mut String,
    pairs: usize,
}

impl<'o> PropertyWriter<'o> {
    pub(crate) fn new(out: &'o mut String) -> Self {
        Self { out, pairs: 0 }
    }

    /// Appends a system property.
    pub fn system(&mut self, property: SystemProperty, value: &str) -> &mut Self {
        self.separate();
        self.out.push_str(property.encoded_key());
        self.push_value(value);
        self
    }

    /// Appends an application property.
    pub fn application(&mut self, name: &str, value: &str) -> &mut Self {
        self.separate();
        self.out
            .extend(utf8_percent_encode(name, QUOTE_SAFE_NOTHING));
        self.push_value(value);
        self
    }

    fn separate(&mut self) {
        if self.pairs > 0 {
            self.out.push('&');
        }
        self.pairs += 1;
    }

    fn push_value(&mut self, value: &str) {
        self.out.push('=');
        self.out
            .extend(utf8_percent_encode(value, QUOTE_SAFE_NOTHING));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    /// The property bag of a D2C topic as the device SDK publishes it.
    const OBSERVED: &str = "%24.mid=mid-1&%24.cid=cid-1&%24.uid=uid&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00%2B00%3A00&a%20b=x%2Fy%26z&b=2";

    fn application(properties: &MessageProperties<'_>) -> Vec<(String, String)> {
        properties
            .application()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    #[test]
    fn the_observed_sdk_bag_parses_into_system_and_application_properties() {
        let properties = MessageProperties::parse(OBSERVED).unwrap();
        assert_eq!(properties.get(SystemProperty::MessageId), Some("mid-1"));
        assert_eq!(properties.get(SystemProperty::CorrelationId), Some("cid-1"));
        assert_eq!(properties.get(SystemProperty::UserId), Some("uid"));
        assert_eq!(
            properties.get(SystemProperty::ContentType),
            Some("application/json")
        );
        assert_eq!(
            properties.get(SystemProperty::ContentEncoding),
            Some("utf-8")
        );
        assert_eq!(
            properties.get(SystemProperty::ExpiryTimeUtc),
            Some("2030-01-01T00:00:00+00:00")
        );
        assert_eq!(properties.get(SystemProperty::OutputName), None);
        assert_eq!(
            application(&properties),
            [
                ("a b".to_owned(), "x/y&z".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(properties.application_count(), 2);
        assert_eq!(properties.expiry_ms(), Some(Ok(1_893_456_000_000)));
    }

    #[test]
    fn values_with_spaces_slashes_ampersands_equals_and_non_ascii_decode() {
        let mut topic = String::new();
        PropertyWriter::new(&mut topic)
            .application("k", "a b/c&d=e")
            .application("ключ", "значение 🌊");
        assert_eq!(
            topic,
            "k=a%20b%2Fc%26d%3De&%D0%BA%D0%BB%D1%8E%D1%87=%D0%B7%D0%BD%D0%B0%D1%87%D0%B5%D0%BD%D0%B8%D0%B5%20%F0%9F%8C%8A"
        );
        let properties = MessageProperties::parse(&topic).unwrap();
        assert_eq!(
            application(&properties),
            [
                ("k".to_owned(), "a b/c&d=e".to_owned()),
                ("ключ".to_owned(), "значение 🌊".to_owned())
            ]
        );
        // An '=' inside a value that was not encoded still splits on the first '=' only.
        let properties = MessageProperties::parse("k=a=b").unwrap();
        assert_eq!(
            application(&properties),
            [("k".to_owned(), "a=b".to_owned())]
        );
    }

    #[test]
    fn plus_is_not_a_space_and_bad_escapes_pass_through() {
        let properties = MessageProperties::parse("a+b=c+d&p=100%&q=%zz").unwrap();
        assert_eq!(
            application(&properties),
            [
                ("a+b".to_owned(), "c+d".to_owned()),
                ("p".to_owned(), "100%".to_owned()),
                ("q".to_owned(), "%zz".to_owned())
            ]
        );
        // Escapes that decode to invalid UTF-8 become U+FFFD, as Python's unquote does.
        let properties = MessageProperties::parse("k=%FF").unwrap();
        assert_eq!(
            application(&properties),
            [("k".to_owned(), "\u{FFFD}".to_owned())]
        );
    }

    #[test]
    fn a_name_without_equals_has_the_empty_value_and_empty_pairs_are_skipped() {
        let properties = MessageProperties::parse("&flag&&empty=&%24.mid=&").unwrap();
        assert_eq!(
            application(&properties),
            [
                ("flag".to_owned(), String::new()),
                ("empty".to_owned(), String::new())
            ]
        );
        assert_eq!(properties.get(SystemProperty::MessageId), Some(""));
        assert_eq!(
            MessageProperties::parse("").unwrap().application().count(),
            0
        );
    }

    #[test]
    fn system_keys_match_however_they_are_escaped() {
        for raw in [
            "$.mid=m",
            "%24.mid=m",
            "%24%2Emid=m",
            "%24%2emid=m",
            "%24.%6Did=m",
        ] {
            let properties = MessageProperties::parse(raw).unwrap();
            assert_eq!(
                properties.get(SystemProperty::MessageId),
                Some("m"),
                "{raw}"
            );
            assert_eq!(properties.application_count(), 0);
        }
        // Close but not system keys: application properties.
        let properties = MessageProperties::parse("$.MID=1&$mid=2&%24.midx=3&$.=4").unwrap();
        assert_eq!(properties.application_count(), 4);
        assert_eq!(properties.system_properties().count(), 0);
    }

    #[test]
    fn no_escapes_means_no_allocation() {
        // The SDK's escaped content type is common enough to be decoded without allocating.
        let properties = MessageProperties::parse("$.mid=m&%24.ct=application%2Fjson&k=v").unwrap();
        assert!(matches!(
            properties.system[SystemProperty::ContentType.index()],
            Some(Cow::Borrowed("application/json"))
        ));
        assert!(matches!(
            properties.system[SystemProperty::MessageId.index()],
            Some(Cow::Borrowed(_))
        ));
        for (name, value) in properties.application() {
            assert!(matches!(
                (name, value),
                (Cow::Borrowed(_), Cow::Borrowed(_))
            ));
        }
    }

    #[test]
    fn every_system_key_round_trips_through_the_writer() {
        let mut topic = String::new();
        let mut writer = PropertyWriter::new(&mut topic);
        for property in SystemProperty::ALL {
            writer.system(property, property.key());
        }
        let properties = MessageProperties::parse(&topic).unwrap();
        for property in SystemProperty::ALL {
            assert_eq!(properties.get(property), Some(property.key()));
            assert_eq!(
                SystemProperty::from_encoded_key(property.encoded_key()),
                Some(property)
            );
        }
        assert_eq!(
            properties
                .system_properties()
                .map(|(p, _)| p)
                .collect::<Vec<_>>(),
            SystemProperty::ALL
        );
    }

    #[test]
    fn bounds_are_enforced_with_errors() {
        let many = vec!["k=v"; PROPERTY_COUNT_MAX + 2].join("&");
        assert_eq!(
            MessageProperties::parse(&many),
            Err(Error::TooManyProperties {
                count: PROPERTY_COUNT_MAX + 2,
                max: PROPERTY_COUNT_MAX
            })
        );
        let exactly = vec!["k=v"; PROPERTY_COUNT_MAX].join("&");
        assert_eq!(
            MessageProperties::parse(&exactly)
                .unwrap()
                .application_count(),
            PROPERTY_COUNT_MAX
        );
        assert_eq!(
            MessageProperties::parse("=v"),
            Err(Error::EmptyPropertyName)
        );
        let long_name = format!("{}=v", "n".repeat(PROPERTY_NAME_BYTES_MAX + 1));
        assert!(matches!(
            MessageProperties::parse(&long_name),
            Err(Error::PropertyNameTooLong { .. })
        ));
        // The bound is on decoded bytes: 16384 escapes of 3 bytes each decode to 16384 bytes.
        let at_bound = format!("k={}", "%41".repeat(PROPERTY_VALUE_BYTES_MAX));
        MessageProperties::parse(&at_bound).unwrap();
        let over = format!("k={}", "v".repeat(PROPERTY_VALUE_BYTES_MAX + 1));
        assert_eq!(
            MessageProperties::parse(&over),
            Err(Error::PropertyValueTooLong {
                bytes: PROPERTY_VALUE_BYTES_MAX + 1,
                max: PROPERTY_VALUE_BYTES_MAX
            })
        );
        assert_eq!(
            MessageProperties::parse("$.mid=a&%24.mid=b"),
            Err(Error::DuplicateSystemProperty(SystemProperty::MessageId))
        );
    }

    proptest::proptest! {
        /// The decoder agrees with the `percent-encoding` crate on any input, escapes or not,
        /// and borrows exactly when nothing decodes.
        #[test]
        fn decoding_agrees_with_percent_encoding(
            raw in proptest::collection::vec(
                proptest::sample::select(&["%", "%2", "%2F", "%e2%82%ac", "%FF", "%zz", "a", "é", "+", "&"][..]),
                0..12,
            ).prop_map(|pieces| pieces.concat()),
        ) {
            let expected = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy();
            let decoded = decode(&raw, raw.contains('%'));
            proptest::prop_assert_eq!(&decoded, &expected);
            proptest::prop_assert_eq!(
                matches!(decoded, Cow::Borrowed(_)),
                matches!(expected, Cow::Borrowed(_))
            );
            proptest::prop_assert_eq!(
                decoded_len(&raw, raw.contains('%')),
                percent_encoding::percent_decode_str(&raw).count()
            );
        }
    }

    #[test]
    fn size_counts_body_system_values_and_application_names_and_values() {
        let properties = MessageProperties::parse(OBSERVED).unwrap();
        // System values: mid-1 (5) cid-1 (5) uid (3) application/json (16) utf-8 (5)
        // 2030-01-01T00:00:00+00:00 (25); application: "a b" "x/y&z" (3 + 5) and "b" "2".
        let expected = 100 + 5 + 5 + 3 + 16 + 5 + 25 + 3 + 5 + 1 + 1;
        assert_eq!(properties.message_bytes(100), expected);
        assert_eq!(properties.check_message_size(100), Ok(expected));
        let body_at_limit = MESSAGE_BYTES_MAX - (expected - 100);
        assert_eq!(
            properties.check_message_size(body_at_limit),
            Ok(MESSAGE_BYTES_MAX)
        );
        assert_eq!(
            properties.check_message_size(body_at_limit + 1),
            Err(Error::MessageTooLarge {
                bytes: MESSAGE_BYTES_MAX + 1,
                max: MESSAGE_BYTES_MAX
            })
        );
    }
}
