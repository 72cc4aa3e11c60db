//! Shared access signatures, as IoT Hub and Event Hubs clients build them.
//!
//! A token is `SharedAccessSignature sr={resource}&sig={signature}&se={expiry}[&skn={policy}]`,
//! fields in any order. The signature is `base64(HMAC-SHA256(key, string_to_sign))` where the
//! string to sign is `{encoded resource}\n{expiry}`. The clients disagree on the details, and a
//! server has to accept all of them:
//!
//! | client | key bytes | `sr` on the wire | string to sign |
//! |---|---|---|---|
//! | device SDK (MQTT, HTTP) | base64-decoded | `quote(uri, safe="")` | the wire form |
//! | service SDK, REST | base64-decoded | `quote_plus(host)` | the wire form |
//! | service SDK, AMQP `$cbs` | base64-decoded | the raw host (`localhost:8443`) | the raw form |
//! | Event Hubs SDK, `$cbs` | the key string's UTF-8 bytes | `quote_plus(audience)` | the wire form |
//!
//! So [`SasToken::verify`] signs both the resource exactly as received and its canonical
//! percent-encoding of the decoded resource, and accepts either; the key bytes are the caller's
//! choice ([`decode_key`] for IoT Hub keys, `key.as_bytes()` for Event Hubs keys). The signature
//! is URL-decoded first: the service SDK leaves `/` unencoded in it, the device SDK encodes it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What Python's `urllib.parse.quote(s, safe="")` leaves alone: letters, digits and `_.-~`.
pub(crate) const QUOTE_SAFE_NOTHING: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// The longest token accepted, in bytes; real tokens are under 300.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// The prefix every token starts with.
pub const TOKEN_PREFIX: &str = "SharedAccessSignature ";

/// Why a token was refused. Every variant is terminal for the request that carried the token;
/// the peer sees an authorization failure (HTTP 401, CONNACK 5, CBS status 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SasError {
    /// The token does not have the `SharedAccessSignature k=v&...` shape.
    #[error("malformed shared access signature: {0}")]
    Malformed(&'static str),
    /// `se` lies in the past.
    #[error("the shared access signature expired at {expiry_secs} (now {now_secs})")]
    Expired {
        /// The token's `se`.
        expiry_secs: u64,
        /// The time it was checked at.
        now_secs: u64,
    },
    /// The HMAC does not match any accepted string to sign.
    #[error("the signature does not match the key")]
    SignatureMismatch,
    /// A key is not valid base64.
    #[error("the key is not valid base64")]
    KeyNotBase64,
}

/// A parsed token. Parsing checks the shape only; [`SasToken::verify`] checks the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as it appeared in the token.
    pub resource_on_wire: String,
    /// `sr` URL-decoded: `localhost/devices/dev1`, `localhost:8443`, `sb://host/hub`.
    pub resource: String,
    /// `sig` URL-decoded and base64-decoded.
    pub signature: Vec<u8>,
    /// `se`, seconds since the Unix epoch.
    pub expiry_secs: u64,
    /// `skn`, the shared access policy name; absent for device and module keys.
    pub key_name: Option<String>,
}

impl SasToken {
    /// Parses `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`.
    pub fn parse(token: &str) -> Result<Self, SasError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(SasError::Malformed("longer than 4096 bytes"));
        }
        let fields = token.strip_prefix(TOKEN_PREFIX).ok_or(SasError::Malformed(
            "does not start with 'SharedAccessSignature '",
        ))?;
        let mut resource_on_wire = None;
        let mut signature = None;
        let mut expiry = None;
        let mut key_name = None;
        for pair in fields.split('&') {
            let (key, value) = pair
                .split_once('=')
                .ok_or(SasError::Malformed("a field has no '='"))?;
            let slot = match key {
                "sr" => &mut resource_on_wire,
                "sig" => &mut signature,
                "se" => &mut expiry,
                "skn" => &mut key_name,
                // Unknown fields are ignored, as the SDK parsers do for forward compatibility.
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(SasError::Malformed("a field appears twice"));
            }
        }
        let resource_on_wire = resource_on_wire.ok_or(SasError::Malformed("no 'sr' field"))?;
        let signature = signature.ok_or(SasError::Malformed("no 'sig' field"))?;
        let expiry = expiry.ok_or(SasError::Malformed("no 'se' field"))?;
        let resource = url_decode(resource_on_wire)?;
        let signature = BASE64
            .decode(url_decode(signature)?)
            .map_err(|_| SasError::Malformed("'sig' is not base64"))?;
        let expiry_secs = expiry
            .parse::<u64>()
            .map_err(|_| SasError::Malformed("'se' is not a whole number of seconds"))?;
        let key_name = key_name.map(url_decode).transpose()?;
        if key_name.as_deref() == Some("") {
            return Err(SasError::Malformed("'skn' is empty"));
        }
        Ok(Self {
            resource_on_wire: resource_on_wire.to_owned(),
            resource,
            signature,
            expiry_secs,
            key_name,
        })
    }

    /// Checks expiry and signature against one key. `key` is the HMAC key as bytes: the
    /// base64-decoded key for IoT Hub clients, the key string itself for Event Hubs clients.
    ///
    /// An empty key never verifies: anyone can sign with it, and callers turn a key that does
    /// not decode into an empty one.
    pub fn verify(&self, key: &[u8], now_secs: u64) -> Result<(), SasError> {
        if key.is_empty() {
            return Err(SasError::SignatureMismatch);
        }
        if self.expiry_secs <= now_secs {
            return Err(SasError::Expired {
                expiry_secs: self.expiry_secs,
                now_secs,
            });
        }
        let canonical = encode_resource(&self.resource);
        let mut forms = [self.resource_on_wire.as_str(), canonical.as_str()];
        if forms[0] == forms[1] {
            forms[1] = "";
        }
        let mut matched = subtle::Choice::from(0);
        for form in forms.into_iter().filter(|form| !form.is_empty()) {
            let expected = sign(key, form, self.expiry_secs);
            matched |= expected.as_slice().ct_eq(&self.signature);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SasError::SignatureMismatch)
        }
    }

    /// Verifies against a primary and a secondary key; either may sign.
    pub fn verify_either(
        &self,
        primary: &[u8],
        secondary: &[u8],
        now_secs: u64,
    ) -> Result<(), SasError> {
        match self.verify(primary, now_secs) {
            Err(SasError::SignatureMismatch) => self.verify(secondary, now_secs),
            other => other,
        }
    }
}

/// Decodes a base64 key as IoT Hub stores it.
pub fn decode_key(key_base64: &str) -> Result<Vec<u8>, SasError> {
    BASE64
        .decode(key_base64.trim())
        .map_err(|_| SasError::KeyNotBase64)
}

/// Encodes a resource the way the device SDK does (`quote(resource, safe="")`).
pub fn encode_resource(resource: &str) -> String {
    utf8_percent_encode(resource, QUOTE_SAFE_NOTHING).to_string()
}

/// Builds a token for `resource` (unencoded, e.g. `localhost/devices/dev1`), signed with `key`
/// (HMAC key bytes). Used by the CLI, the load generator and the tests.
pub fn generate(resource: &str, key: &[u8], expiry_secs: u64, key_name: Option<&str>) -> String {
    let encoded_resource = encode_resource(resource);
    let signature = BASE64.encode(sign(key, &encoded_resource, expiry_secs));
    let signature = utf8_percent_encode(&signature, QUOTE_SAFE_NOTHING);
    let mut token = format!("{TOKEN_PREFIX}sr={encoded_resource}&sig={signature}&se={expiry_secs}");
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(&utf8_percent_encode(name, QUOTE_SAFE_NOTHING).to_string());
    }
    token
}

fn sign(key: &[u8], resource: &str, expiry_secs: u64) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(resource.as_bytes());
    mac.update(b"\n");
    mac.update(expiry_secs.to_string().as_bytes());
    mac.finalize().into_bytes().into()
}

fn url_decode(value: &str) -> Result<String, SasError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| SasError::Malformed("a field is not UTF-8 after URL-decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 zero bytes, the key of the worked SAS examples.
    const ZERO_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const SE: u64 = 1_700_000_000;
    const BEFORE: u64 = SE - 10;

    fn zero_key() -> Vec<u8> {
        decode_key(ZERO_KEY).unwrap()
    }

    #[test]
    fn worked_example_device_token_verifies() {
        let token = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=FZOlNa5AJB6q3ivl3f%2FLUonFxr5QRUBtgfHSRBWHMbo%3D&se=1700000000";
        let parsed = SasToken::parse(token).unwrap();
        assert_eq!(parsed.resource, "localhost/devices/dev1");
        assert_eq!(parsed.key_name, None);
        parsed.verify(&zero_key(), BEFORE).unwrap();
        assert_eq!(
            generate("localhost/devices/dev1", &zero_key(), SE, None),
            token
        );
    }

    #[test]
    fn worked_example_module_token_verifies() {
        let token = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1%2Fmodules%2Fmod1&sig=KrkJ6DyK9wMaJZSYoUmxpRjXKHyaMmTvygAcrImLJuY%3D&se=1700000000";
        SasToken::parse(token)
            .unwrap()
            .verify(&zero_key(), BEFORE)
            .unwrap();
    }

    #[test]
    fn service_rest_token_with_unencoded_slash_in_sig_verifies() {
        let token = "SharedAccessSignature sr=localhost&sig=1AAF52dF9wkHqcngi2b3x/mMvzuHMqqH4VecWGTEgyY%3D&se=1700000000&skn=iothubowner";
        let parsed = SasToken::parse(token).unwrap();
        assert_eq!(parsed.key_name.as_deref(), Some("iothubowner"));
        parsed.verify(&zero_key(), BEFORE).unwrap();
    }

    #[test]
    fn service_rest_token_with_port_verifies() {
        let token = "SharedAccessSignature sr=localhost%3A8443&sig=kmYKp8%2B6sg8PnjZLAUFjIKb4nz8gUT0nx1qMK8yCw3g%3D&se=1700000000&skn=iothubowner";
        let parsed = SasToken::parse(token).unwrap();
        assert_eq!(parsed.resource, "localhost:8443");
        parsed.verify(&zero_key(), BEFORE).unwrap();
    }

    #[test]
    fn service_amqp_token_signed_over_the_raw_host_verifies() {
        let signature = BASE64.encode(sign(&zero_key(), "localhost:8443", SE));
        let token = format!(
            "SharedAccessSignature sr=localhost:8443&sig={}&se={SE}&skn=service",
            utf8_percent_encode(&signature, QUOTE_SAFE_NOTHING)
        );
        SasToken::parse(&token)
            .unwrap()
            .verify(&zero_key(), BEFORE)
            .unwrap();
    }

    #[test]
    fn event_hubs_token_uses_the_key_string_as_bytes() {
        let key = "some-key-string";
        let audience = "sb://localhost/hub/consumergroups/$Default";
        let token = generate(audience, key.as_bytes(), SE, Some("service"));
        let parsed = SasToken::parse(&token).unwrap();
        assert_eq!(parsed.resource, audience);
        parsed.verify(key.as_bytes(), BEFORE).unwrap();
        assert_eq!(
            parsed.verify(&zero_key(), BEFORE),
            Err(SasError::SignatureMismatch)
        );
    }

    #[test]
    fn expired_token_is_refused_even_with_the_right_key() {
        let token = generate("localhost/devices/dev1", &zero_key(), SE, None);
        let parsed = SasToken::parse(&token).unwrap();
        assert!(matches!(
            parsed.verify(&zero_key(), SE),
            Err(SasError::Expired { .. })
        ));
    }

    #[test]
    fn wrong_key_and_tampered_resource_are_refused() {
        let token = generate("localhost/devices/dev1", &zero_key(), SE, None);
        let parsed = SasToken::parse(&token).unwrap();
        assert_eq!(
            parsed.verify(&[1u8; 32], BEFORE),
            Err(SasError::SignatureMismatch)
        );
        let tampered = SasToken::parse(&token.replace("dev1", "dev2")).unwrap();
        assert_eq!(
            tampered.verify(&zero_key(), BEFORE),
            Err(SasError::SignatureMismatch)
        );
    }

    #[test]
    fn either_key_may_sign() {
        let token = generate("h/devices/d", &[7u8; 32], SE, None);
        let parsed = SasToken::parse(&token).unwrap();
        parsed
            .verify_either(&[1u8; 32], &[7u8; 32], BEFORE)
            .unwrap();
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_reason() {
        for token in [
            "",
            "Bearer abc",
            "SharedAccessSignature ",
            "SharedAccessSignature sr=a&se=1",
            "SharedAccessSignature sr=a&sig=AAAA&se=soon",
            "SharedAccessSignature sr=a&sig=!!!&se=1",
            "SharedAccessSignature sr=a&sr=b&sig=AAAA&se=1",
            "SharedAccessSignature sr=a&sig=AAAA&se=1&skn=",
            "SharedAccessSignature sr=%FF&sig=AAAA&se=1",
        ] {
            assert!(
                matches!(SasToken::parse(token), Err(SasError::Malformed(_))),
                "{token:?} should be malformed"
            );
        }
        assert!(SasToken::parse(&"x".repeat(TOKEN_BYTES_MAX + 1)).is_err());
    }
}
