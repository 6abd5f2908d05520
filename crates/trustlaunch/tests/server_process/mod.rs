//! A TPM server process under test (real swtpm or `trustlaunch vtpm socket`) on a TCP data
//! port and the control port after it, its output appended to a log file: started until both
//! ports accept, stopped as a service manager stops it (shared by the tpm2-tools suites).
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// How long a server may take to accept on both ports.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The process, while it runs, and how many times it was started.
#[derive(Default)]
pub struct ServerProcess {
    child: Option<Child>,
    starts: u32,
}

impl ServerProcess {
    /// Start `cmd` (its output appended to `log`) and wait until `port` and `port + 1`
    /// accept connections and the process is still the one that bound them.
    pub fn spawn(&mut self, mut cmd: Command, log: &Path, port: u16) -> Result<(), String> {
        self.starts += 1;
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("open server log: {e}"))?;
        let _ = writeln!(out, "=== start #{}: {cmd:?}", self.starts);
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        for port in [port, port + 1] {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            loop {
                self.check_alive()?;
                if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    self.kill();
                    return Err(format!(
                        "nothing accepted on {addr} within {START_TIMEOUT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // A server that failed to bind exits: make sure what accepted was ours.
        std::thread::sleep(Duration::from_millis(50));
        self.check_alive()
    }

    /// Whether the process still runs (an error saying how it ended otherwise).
    pub fn check_alive(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Err("no server process".into());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                Err(format!("server exited early ({status})"))
            }
            Err(e) => Err(format!("try_wait: {e}")),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit, as a service manager stops a server; a server still
    /// running after [`STOP_TIMEOUT`] is killed and this is an error.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours; the child
            // is not reaped yet, so the pid is still ours.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        match child.wait_timeout(STOP_TIMEOUT) {
            Ok(Some(_)) => Ok(()),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "server did not exit within {STOP_TIMEOUT:?} of SIGTERM"
                ))
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
