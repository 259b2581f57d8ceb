//! Resource limits of child processes (`executor_config(max_memory = "256MiB",
//! max_cpu_time = "10s")` on the Process executor): set in the child with `setrlimit`
//! after `fork` and before it runs anything of its own, and named in the error of an
//! attempt whose child they stopped.
//!
//! `max_memory` is `RLIMIT_AS` (the child's address space): an allocation past it fails,
//! and the child aborts saying `memory allocation of N bytes failed`. `max_cpu_time` is
//! `RLIMIT_CPU`: past it the kernel sends `SIGXCPU`, which ends the child (and `SIGKILL`
//! one second later, the hard limit).

use std::time::Duration;

/// Parses a size: `"256MiB"`, `"1GiB"`, `"512KiB"`, `"100MB"`, `"4096"` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as \"256MiB\""))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}`: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    let bytes = n * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is not a size of at least one byte"));
    }
    Ok(bytes as u64)
}

/// Serde for an optional size in configuration: `"256MiB"` or a number of bytes.
pub mod bytes_option {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Bytes(u64),
    }

    /// Writes the size in bytes, or nothing.
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }

    /// Reads `"256MiB"` or a number of bytes, or nothing.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Written>::deserialize(d)? {
            Some(Written::Bytes(n)) => Ok(Some(n)),
            Some(Written::Text(t)) => super::parse_bytes(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// The limits of one pool's children.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) memory: Option<u64>,
    pub(crate) cpu: Option<Duration>,
}

impl Limits {
    /// Sets the limits in the child of `cmd`, between `fork` and `exec`.
    #[allow(unsafe_code)]
    pub(crate) fn apply(self, cmd: &mut tokio::process::Command) {
        if self.memory.is_none() && self.cpu.is_none() {
            return;
        }
        let memory = self.memory.map(|b| b as libc::rlim_t);
        // At least one second: RLIMIT_CPU counts whole seconds.
        let cpu = self
            .cpu
            .map(|d| d.as_secs_f64().ceil().max(1.0) as libc::rlim_t);
        let set = move || -> std::io::Result<()> {
            if let Some(m) = memory {
                set_limit(libc::RLIMIT_AS, m, m)?;
            }
            if let Some(c) = cpu {
                // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
                set_limit(libc::RLIMIT_CPU, c, c.saturating_add(1))?;
            }
            Ok(())
        };
        // SAFETY: the closure runs in the child between `fork` and `exec`, where only
        // async-signal-safe calls are allowed. It calls `setrlimit` (async-signal-safe per
        // POSIX) with a struct on its own stack, and reads `errno` on failure
        // (`io::Error::last_os_error`, which allocates nothing for an OS error); it takes
        // no lock and allocates no memory. The captured values are plain integers.
        unsafe {
            cmd.pre_exec(set);
        }
    }

    /// What stopped a child that ended with `status`, when it was one of these limits;
    /// `stderr` is the end of what it wrote.
    pub(crate) fn diagnose(
        self,
        status: Option<std::process::ExitStatus>,
        stderr: &str,
    ) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        let signal = status.and_then(|s| s.signal());
        if let (Some(cpu), Some(libc::SIGXCPU | libc::SIGKILL)) = (self.cpu, signal)
            && (signal == Some(libc::SIGXCPU) || stderr.is_empty())
        {
            return Some(format!(
                "the child process used its CPU time limit (max_cpu_time = {cpu:?}) and was stopped"
            ));
        }
        if let Some(mem) = self.memory
            && (stderr.contains("memory allocation of") || stderr.contains("out of memory"))
        {
            return Some(format!(
                "the child process reached its memory limit (max_memory = {} MiB) and was stopped: {}",
                mem / (1024 * 1024),
                stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
            ));
        }
        None
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

#[allow(unsafe_code)]
fn set_limit(resource: Resource, soft: libc::rlim_t, hard: libc::rlim_t) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `setrlimit` reads the `rlimit` struct passed by pointer, which lives on this
    // stack frame for the whole call; it writes no memory of this process.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_their_units() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(
            parse_bytes("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("0").is_err());
    }
}
