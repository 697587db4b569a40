//! Child processes that leave nothing behind: each runs in its own process group, so
//! stopping it also stops what it started (`cargo lambda watch` starts `cargo run`,
//! which starts the function), and dropping it kills the whole group.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A child process leading its own process group.
#[derive(Debug)]
pub struct GroupChild {
    name: String,
    child: Child,
    pgid: i32,
}

impl GroupChild {
    /// Spawns `command` in a new process group, its output appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> std::io::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn()?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| std::io::Error::other(format!("{name} exited at once")))?;
        Ok(GroupChild {
            name: name.to_owned(),
            child,
            pgid,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process group id (the leader's pid).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The exit status, if the leader has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the leader to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Asks the whole group to stop (SIGTERM), waits up to `grace`, then kills what is
    /// left (SIGKILL).
    pub async fn stop(&mut self, grace: Duration) {
        signal_group(self.pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && group_alive(self.pgid) {
            let _ = self.child.try_wait();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.wait().await;
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        signal_group(self.pgid, libc::SIGKILL);
        let _ = self.child.try_wait();
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; it has no memory
        // effects, and a group that is gone only yields ESRCH.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Whether any process of group `pgid` is still alive (zombies included until reaped).
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// Whether process `pid` is alive.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 1 && unsafe { libc::kill(pid, 0) == 0 }
}

/// Processes whose environment has `name` set to a value starting with `value_prefix`
/// (Linux `/proc`; elsewhere none are found). `cargo lambda watch` starts each function
/// in a process group of its own, with `AWS_LAMBDA_RUNTIME_API` pointing at the
/// watcher: this finds them.
pub fn processes_with_env(name: &str, value_prefix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| env_var(*pid, name).is_some_and(|value| value.starts_with(value_prefix)))
        .collect()
}

/// The value of `name` in the environment process `pid` started with (Linux `/proc`;
/// `None` elsewhere, for a process that is gone, or one not ours to read).
pub fn env_var(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|var| {
        let value = var.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// Kills process `pid` (SIGKILL).
pub fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 1
    {
        // SAFETY: kill(2) has no memory effects; a process that is gone yields ESRCH.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}
