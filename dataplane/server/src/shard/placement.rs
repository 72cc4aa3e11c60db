//! Where things live: a device's partition, and a partition's shard.
//!
//! IoT Hub partitions by originating device, so a device's partition is a pure function of its
//! id. The function is part of the on-disk contract (a device's history stays in one partition
//! across restarts), so it must never change: FNV-1a (32-bit) over the id's UTF-8 bytes,
//! modulo the partition count. Modules share their device's partition.
//!
//! A partition's owner is `partition % shard_count`; it depends on the shard count of the
//! running process only, so changing the core count moves ownership, never data.

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The partition of a device's messages.
pub fn partition_of(device_id: &str, partition_count: u32) -> u32 {
    assert!(partition_count > 0, "a hub has at least one partition");
    let mut hash = FNV_OFFSET_BASIS;
    for byte in device_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash % partition_count
}

/// The shard that owns a partition.
pub fn shard_of(partition: u32, shard_count: usize) -> usize {
    assert!(shard_count > 0, "the data plane has at least one shard");
    partition as usize % shard_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_function_is_stable_forever() {
        // These values are persisted implicitly (which log holds a device's history);
        // a change here is a data migration, not a refactor.
        assert_eq!(partition_of("dev1", 4), 0x6909_92f7 % 4);
        assert_eq!(partition_of("", 4), FNV_OFFSET_BASIS % 4);
        assert!(partition_of("any-device", 128) < 128);
    }

    #[test]
    fn devices_spread_over_partitions() {
        let mut counts = [0u32; 4];
        for index in 0..4000 {
            counts[partition_of(&format!("device-{index}"), 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|count| (800..1200).contains(count)),
            "{counts:?}"
        );
    }
}
