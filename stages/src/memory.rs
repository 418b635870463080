//! How much more memory this process may take, and what limits it: the least of
//!
//! - the machine's: `MemAvailable` plus `SwapFree` of `/proc/meminfo`;
//! - the process's own limits, as `ulimit -v` / `ulimit -d` set them (`getrlimit`):
//!   `RLIMIT_AS` less the address space in use (`VmSize` of `/proc/self/status`) and
//!   `RLIMIT_DATA` less the data in use (`VmData`);
//! - its control group's, as a container, a Slurm job or systemd set it: cgroup v2
//!   `memory.max` less `memory.current`, cgroup v1 `memory.limit_in_bytes` less
//!   `memory.usage_in_bytes`, for the process's group and every group above it (a limit
//!   binds all below it). Groups are found from `/proc/self/cgroup` under
//!   `/sys/fs/cgroup`; where a cgroup namespace hides the path, the mount's root is the
//!   process's own group.
//!
//! A stage that would train a network larger than this fails before allocating it
//! ([`crate::nn::model::ModelSpec::check_fits`]), naming the limit, instead of being killed
//! by an allocation failure (abort, signal 6) or the kernel's out-of-memory killer halfway
//! through. What cannot be read (another OS, an unmounted cgroup file system) limits
//! nothing.

use std::path::{Path, PathBuf};

/// Bytes this process may still take, and the limit that sets it, in words.
#[derive(Clone, Debug, PartialEq)]
pub struct Headroom {
    pub bytes: u64,
    pub limit: String,
}

/// The least headroom among the limits that can be read (see the module doc); `None` when
/// none can.
pub fn headroom() -> Option<Headroom> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut all = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
        all.extend(machine(&text));
    }
    all.extend(rlimits(&status));
    if let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") {
        all.extend(cgroups(&text, Path::new("/sys/fs/cgroup")));
    }
    least(all)
}

fn least(all: Vec<Headroom>) -> Option<Headroom> {
    all.into_iter().min_by_key(|h| h.bytes)
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// A `Name:   123 kB` field of `/proc/meminfo` or `/proc/self/status`, in bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The machine's available memory and swap, from the text of `/proc/meminfo`.
pub fn machine(meminfo: &str) -> Option<Headroom> {
    let bytes = kb_field(meminfo, "MemAvailable:")? + kb_field(meminfo, "SwapFree:").unwrap_or(0);
    Some(Headroom {
        bytes,
        limit: "the machine's available memory and swap".into(),
    })
}

/// `RLIMIT_AS` and `RLIMIT_DATA` (soft limits), less what the process uses of each
/// (`VmSize`, `VmData` of `status`, the text of `/proc/self/status`).
fn rlimits(status: &str) -> Vec<Headroom> {
    let mut out = Vec::new();
    for (resource, field, what) in [
        (
            libc::RLIMIT_AS,
            "VmSize:",
            "address space (RLIMIT_AS, `ulimit -v`)",
        ),
        (
            libc::RLIMIT_DATA,
            "VmData:",
            "data segment (RLIMIT_DATA, `ulimit -d`)",
        ),
    ] {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the limits of this process into `rl`.
        if unsafe { libc::getrlimit(resource, &mut rl) } != 0 || rl.rlim_cur == libc::RLIM_INFINITY
        {
            continue;
        }
        out.push(limited(
            rl.rlim_cur,
            kb_field(status, field).unwrap_or(0),
            &format!("this process's {what}"),
        ));
    }
    out
}

/// The headroom under a limit of `limit` bytes of which `used` are in use.
fn limited(limit: u64, used: u64, what: &str) -> Headroom {
    Headroom {
        bytes: limit.saturating_sub(used),
        limit: format!("{what} limit of {}, {} of it in use", gib(limit), gib(used)),
    }
}

/// Limits of v1 and v2 control groups above this one: `proc_cgroup` is the text of
/// `/proc/self/cgroup`, `root` where the cgroup file systems are mounted.
pub fn cgroups(proc_cgroup: &str, root: &Path) -> Vec<Headroom> {
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            let mount = if root.join("cgroup.controllers").exists() {
                root.to_path_buf()
            } else {
                root.join("unified")
            };
            out.extend(walk_up(
                &mount,
                path,
                "memory.max",
                "memory.current",
                "control group's memory.max",
            ));
        } else if controllers.split(',').any(|c| c == "memory") {
            out.extend(walk_up(
                &root.join("memory"),
                path,
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "control group's memory.limit_in_bytes",
            ));
        }
    }
    out
}

/// The limits `limit_file` sets (less `usage_file`) in the group at `path` under `mount`
/// and in every group above it, up to the mount's root. A path the namespace hides starts
/// from the root.
fn walk_up(
    mount: &Path,
    path: &str,
    limit_file: &str,
    usage_file: &str,
    what: &str,
) -> Vec<Headroom> {
    let mut dir: PathBuf = mount.join(path);
    if !dir.is_dir() {
        dir = mount.to_path_buf();
    }
    let mut out = Vec::new();
    loop {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        // "max" (v2) and a page-rounded 2^63 (v1) mean no limit.
        if let Some(limit) = read(limit_file).and_then(|t| t.trim().parse::<u64>().ok()) {
            if limit < 1 << 62 {
                let used = read(usage_file)
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                out.push(limited(
                    limit,
                    used,
                    &format!("the {what} ({})", dir.display()),
                ));
            }
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_memory_is_available_plus_free_swap() {
        let text = "MemTotal: 100 kB\nMemFree: 5 kB\nMemAvailable:   40 kB\nSwapFree: 2 kB\n";
        assert_eq!(machine(text).unwrap().bytes, 42 * 1024);
        assert_eq!(machine("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn cgroup_limits_are_read_for_the_group_and_its_parents() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // v2: a job's group under a limited parent, the job itself unlimited.
        let job = root.join("unified/slurm/job_7");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(job.join("memory.max"), "max\n").unwrap();
        std::fs::write(job.join("memory.current"), "100\n").unwrap();
        std::fs::write(root.join("unified/slurm/memory.max"), "8589934592\n").unwrap();
        std::fs::write(root.join("unified/slurm/memory.current"), "1073741824\n").unwrap();
        // v1: a limit on the group itself.
        let v1 = root.join("memory/docker/abc");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "4294967296\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "1073741824\n").unwrap();
        std::fs::write(
            root.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        let proc_cgroup = "4:memory:/docker/abc\n3:cpu:/docker/abc\n0::/slurm/job_7\n";
        let found = cgroups(proc_cgroup, root);
        let bytes: Vec<u64> = found.iter().map(|h| h.bytes).collect();
        assert_eq!(bytes, [3 << 30, 7 << 30], "{found:?}");
        let least = least(found).unwrap();
        assert!(
            least
                .limit
                .starts_with("the control group's memory.limit_in_bytes"),
            "{least:?}"
        );
        assert!(
            least
                .limit
                .contains("limit of 4.0 GiB, 1.0 GiB of it in use"),
            "{least:?}"
        );
        // A path the namespace hides: the mount's root is the group.
        std::fs::write(root.join("memory/memory.limit_in_bytes"), "2147483648\n").unwrap();
        let found = cgroups("4:memory:/elsewhere/xyz\n", root);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].bytes, 2 << 30);
    }

    #[test]
    fn address_space_limit_counts_what_is_in_use() {
        let status = "Name: x\nVmSize:  1048576 kB\nVmData: 524288 kB\n";
        let h = limited(
            4 << 30,
            kb_field(status, "VmSize:").unwrap(),
            "this process's address space",
        );
        assert_eq!(h.bytes, 3 << 30);
        assert_eq!(
            h.limit,
            "this process's address space limit of 4.0 GiB, 1.0 GiB of it in use"
        );
    }
}
