//! Generated values: keys, etags and generation ids.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore as _;

/// Bytes in a generated symmetric key; IoT Hub accepts 16 to 64.
pub const KEY_BYTES: usize = 32;
/// The shortest key IoT Hub accepts, in decoded bytes.
pub const KEY_BYTES_MIN: usize = 16;
/// The longest key IoT Hub accepts, in decoded bytes.
pub const KEY_BYTES_MAX: usize = 64;

/// A new random key, base64.
pub fn new_key() -> String {
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    BASE64.encode(key)
}

/// Checks that a caller-supplied key is base64 of 16 to 64 bytes.
pub fn validate_key(key: &str) -> Result<(), String> {
    match BASE64.decode(key) {
        Ok(bytes) if (KEY_BYTES_MIN..=KEY_BYTES_MAX).contains(&bytes.len()) => Ok(()),
        Ok(bytes) => Err(format!(
            "a symmetric key must decode to 16-64 bytes; this one has {}",
            bytes.len()
        )),
        Err(_) => Err("a symmetric key must be base64".to_owned()),
    }
}

/// A new etag: base64 of a random number, the shape IoT Hub uses (`MTA2NzU2ODMy`).
pub fn new_etag() -> String {
    BASE64.encode(rand::rng().next_u32().to_string())
}

/// A new generation id: 18 digits, like IoT Hub's.
pub fn new_generation_id() -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    // .NET ticks since 0001-01-01, which is what IoT Hub's ids are made of.
    let ticks = now / 100 + 621_355_968_000_000_000;
    format!("{ticks}")
}

/// Normalises an X.509 thumbprint: hex, 40 (SHA-1) or 64 (SHA-256) digits, upper-case.
pub fn normalize_thumbprint(thumbprint: &str) -> Result<String, String> {
    let hex: String = thumbprint
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect();
    if !matches!(hex.len(), 40 | 64) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "an X.509 thumbprint must be 40 or 64 hex digits; got {thumbprint:?}"
        ));
    }
    Ok(hex.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_pass_validation_and_bad_ones_fail() {
        validate_key(&new_key()).unwrap();
        assert!(validate_key("not base64!").is_err());
        assert!(validate_key(&BASE64.encode([0u8; 8])).is_err());
        assert!(validate_key(&BASE64.encode([0u8; 65])).is_err());
    }

    #[test]
    fn thumbprints_are_normalised() {
        let sha1 = "ab".repeat(20);
        assert_eq!(normalize_thumbprint(&sha1).unwrap(), sha1.to_uppercase());
        assert!(normalize_thumbprint("xyz").is_err());
    }
}
