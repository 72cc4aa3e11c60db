//! The cost of authenticating a device's CONNECT password: parsing its SAS token, checking
//! the resource against the identity and verifying the HMAC.
//!
//! `cargo bench -p benches --bench sas_verify` (test mode: `cargo test -p benches --benches`)

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dataplane_wire::iothub::{ClientId, authorize};
use dataplane_wire::sas::{SasToken, decode_key};

/// The device password of a worked SAS example: device `dev1`, zero key.
const TOKEN: &str = "SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=FZOlNa5AJB6q3ivl3f%2FLUonFxr5QRUBtgfHSRBWHMbo%3D&se=1700000000";
const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const NOW_SECS: u64 = 1_699_999_000;

fn sas(c: &mut Criterion) {
    let key = decode_key(KEY).expect("valid base64");
    let client = ClientId::parse("dev1").expect("a valid id");
    let parsed = SasToken::parse(TOKEN).expect("a valid token");
    let mut group = c.benchmark_group("sas");
    group.bench_function("device_token_verify", |b| {
        b.iter(|| {
            black_box(&parsed)
                .verify(&key, NOW_SECS)
                .expect("signed with the key");
        });
    });
    group.bench_function("device_token_parse_authorize_verify", |b| {
        b.iter(|| {
            let token = SasToken::parse(black_box(TOKEN)).expect("a valid token");
            authorize(&token, &client, &["localhost"]).expect("the device's own token");
            token.verify(&key, NOW_SECS).expect("signed with the key");
        });
    });
    group.finish();
}

criterion_group!(benches, sas);
criterion_main!(benches);
