//! What the server process and the machine cost, from `/proc`.
//!
//! - Server CPU: `utime + stime` of `/proc/{pid}/stat` (fields 14 and 15, every thread of
//!   the process), in clock ticks (`sysconf(_SC_CLK_TCK)`, usually 100 per second, so a
//!   10 s run is measured to about 0.1 %).
//! - Server memory: `VmRSS` and `VmHWM` of `/proc/{pid}/status`.
//! - Machine: the aggregate `cpu` line of `/proc/stat`, to show how much CPU *other*
//!   processes used during a run (a shared machine is a noisy machine).

use std::path::Path;

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// User + system CPU time of every thread, in nanoseconds (tick resolution).
    pub cpu_ns: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Peak resident set size in bytes.
    pub rss_peak_bytes: u64,
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// Parses the `utime + stime` of a `/proc/{pid}/stat` line, in ticks.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces; count from the last
    // ')'. Field 3 (state) is then the first field after it, so utime (14) is the 12th.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Parses a `Vm…:   1234 kB` line value of `/proc/{pid}/status`, in bytes.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Reads a process; `None` if it is gone.
pub fn sample_process(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    Some(ProcessSample {
        cpu_ns: ticks * (crate::clock::NS_PER_S / ticks_per_second()),
        rss_bytes: parse_status_kb(&status, "VmRSS").unwrap_or(0),
        rss_peak_bytes: parse_status_kb(&status, "VmHWM").unwrap_or(0),
    })
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after
                .split_ascii_whitespace()
                .next()
                .map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The machine's aggregate CPU counters, in nanoseconds, and its disks' busy time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MachineCpu {
    /// Time spent doing anything but idling or waiting for I/O, summed over CPUs.
    pub busy_ns: u64,
    /// Time stolen by the hypervisor.
    pub steal_ns: u64,
    /// Time whole disks had I/O in flight (`/proc/diskstats`), summed over disks, in
    /// nanoseconds.
    pub disk_busy_ns: u64,
    /// Bytes written to whole disks (sectors written × 512), summed over disks.
    pub disk_written_bytes: u64,
}

/// Sums, over whole disks (not partitions, loop or RAM devices) of `/proc/diskstats`,
/// the milliseconds with I/O in flight and the sectors written; `is_disk` says whether a
/// name is a whole disk.
pub fn parse_disk_stats(diskstats: &str, is_disk: &dyn Fn(&str) -> bool) -> (u64, u64) {
    diskstats
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let name = *fields.get(2)?;
            if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
                return None;
            }
            if !is_disk(name) {
                return None;
            }
            let sectors_written = fields.get(9)?.parse::<u64>().ok()?;
            let busy_ms = fields.get(12)?.parse::<u64>().ok()?;
            Some((busy_ms, sectors_written))
        })
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// Parses the first (`cpu`) line of `/proc/stat`.
pub fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_ascii_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let tick_ns = crate::clock::NS_PER_S / ticks_per_second();
    Some(MachineCpu {
        busy_ns: (get(0) + get(1) + get(2) + get(5) + get(6)) * tick_ns,
        steal_ns: get(7) * tick_ns,
        disk_busy_ns: 0,
        disk_written_bytes: 0,
    })
}

/// Reads `/proc/stat` and `/proc/diskstats`.
pub fn sample_machine() -> MachineCpu {
    let mut sample = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_machine_cpu(&s))
        .unwrap_or_default();
    let is_disk = |name: &str| std::path::Path::new("/sys/block").join(name).exists();
    let (busy_ms, sectors) = std::fs::read_to_string("/proc/diskstats")
        .map_or((0, 0), |s| parse_disk_stats(&s, &is_disk));
    sample.disk_busy_ns = busy_ms * crate::clock::NS_PER_MS;
    sample.disk_written_bytes = sectors * 512;
    sample
}

/// Describes the machine a run happened on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// `model name` of the first CPU.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// The host name.
    pub hostname: String,
}

/// CPUs online on the machine (not the calling thread's affinity, which `taskset` narrows).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

/// Gathers [`Machine`].
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let read_trimmed = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    Machine {
        cpu_model,
        cores: online_cpus(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        memory_bytes: parse_status_kb(&meminfo, "MemTotal").unwrap_or(0),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
    }
}

/// The commit of the repository holding `dir`, with `-dirty` if the tree has changes.
pub fn git_commit(dir: &Path) -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = run(&["rev-parse", "HEAD"])?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if !dirty {
        return Some(head);
    }
    // Two runs on the same commit with different uncommitted changes must not look alike:
    // name the changes by a digest of the diff.
    let diff = run(&["diff", "HEAD"]).unwrap_or_default();
    Some(format!("{head}-dirty-{:016x}", fnv1a(diff.as_bytes())))
}

/// FNV-1a, 64 bits: a stable digest for naming things, not for security.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The executable a process runs, so a report names the exact server binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executable {
    /// `/proc/{pid}/exe`.
    pub path: String,
    /// Its size.
    pub size_bytes: u64,
    /// Its modification time, seconds since the Unix epoch.
    pub modified_unix_s: u64,
}

/// Describes the executable of `pid`.
pub fn executable(pid: u32) -> Option<Executable> {
    let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Some(Executable {
        path: path.display().to_string(),
        size_bytes: meta.len(),
        modified_unix_s: modified,
    })
}

/// Child processes of `pid` (from `/proc/{pid}/task/*/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let stat =
            "1234 (my server (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_values_in_bytes() {
        let status = "Name:\tshoal\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn machine_cpu_line() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 1 2 3 4\n";
        let cpu = parse_machine_cpu(stat).expect("parses");
        let tick = crate::clock::NS_PER_S / ticks_per_second();
        assert_eq!(cpu.busy_ns, 21 * tick);
        assert_eq!(cpu.steal_ns, 4 * tick);
    }

    #[test]
    fn disk_busy_counts_whole_disks_only() {
        let stats = "   7 0 loop0 1 0 0 0 0 0 0 0 0 900 0 0 0 0 0 0 0\n \
                     254 0 vda 10 0 0 0 0 0 8 0 0 1234 0 0 0 0 0 0 0\n \
                     254 1 vda1 10 0 0 0 0 0 8 0 0 1200 0 0 0 0 0 0 0\n";
        let is_disk = |name: &str| name == "vda";
        assert_eq!(parse_disk_stats(stats, &is_disk), (1234, 8));
    }

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = sample_process(std::process::id()).expect("self exists");
        assert!(sample.rss_bytes > 0);
        assert!(process_alive(std::process::id()));
        let exe = executable(std::process::id()).expect("our own executable");
        assert!(exe.size_bytes > 0);
        assert!(!machine().kernel.is_empty());
    }
}
