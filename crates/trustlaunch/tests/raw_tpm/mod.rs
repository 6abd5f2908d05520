//! Raw TPM 2.0 commands over the swtpm TCP data port, and a `trustlaunch vtpm socket`
//! server to send them to (shared by the crash and state encryption tests).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NV_INDEX: u32 = 0x0150_0020;

/// xorshift64*: reproducible randomness without a dependency (the seed is printed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A command with a password session (empty password) authorizing `auth_handle`.
pub fn command(cc: u32, handles: &[u32], params: &[u8]) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&0x8002u16.to_be_bytes());
    c.extend_from_slice(&0u32.to_be_bytes());
    c.extend_from_slice(&cc.to_be_bytes());
    for h in handles {
        c.extend_from_slice(&h.to_be_bytes());
    }
    // Authorization area: TPM_RS_PW, empty nonce, continueSession, empty password.
    c.extend_from_slice(&9u32.to_be_bytes());
    c.extend_from_slice(&0x4000_0009u32.to_be_bytes());
    c.extend_from_slice(&0u16.to_be_bytes());
    c.push(0x01);
    c.extend_from_slice(&0u16.to_be_bytes());
    c.extend_from_slice(params);
    let len = c.len() as u32;
    c[2..6].copy_from_slice(&len.to_be_bytes());
    c
}

pub fn nv_define() -> Vec<u8> {
    // OWNERWRITE | AUTHWRITE | OWNERREAD | AUTHREAD | NO_DA, ordinary index.
    let attrs: u32 = 0x2 | 0x4 | 0x2_0000 | 0x4_0000 | 0x200_0000;
    let mut p = Vec::new();
    p.extend_from_slice(&0u16.to_be_bytes()); // auth
    p.extend_from_slice(&14u16.to_be_bytes()); // TPM2B_NV_PUBLIC
    p.extend_from_slice(&NV_INDEX.to_be_bytes());
    p.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256
    p.extend_from_slice(&attrs.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    p.extend_from_slice(&8u16.to_be_bytes()); // dataSize
    command(0x12A, &[0x4000_0001], &p)
}

pub fn nv_write(value: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&8u16.to_be_bytes());
    p.extend_from_slice(&value.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // offset
    command(0x137, &[NV_INDEX, NV_INDEX], &p)
}

pub fn nv_read() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&8u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    command(0x14E, &[NV_INDEX, NV_INDEX], &p)
}

pub fn transact(s: &mut TcpStream, cmd: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(cmd)?;
    let mut head = [0u8; 10];
    s.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
    let mut rsp = head.to_vec();
    rsp.resize(len.max(10), 0);
    s.read_exact(&mut rsp[10..])?;
    Ok(rsp)
}

pub fn rc(rsp: &[u8]) -> u32 {
    u32::from_be_bytes([rsp[6], rsp[7], rsp[8], rsp[9]])
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

pub fn start(dir: &Path, key: &Path, log: &Path) -> Server {
    start_with(
        dir,
        &[
            "--key".to_string(),
            format!("file={}", key.display()),
            "--log".to_string(),
            format!("file={},level=1", log.display()),
        ],
    )
}

fn command_for(dir: &Path, extra: &[String]) -> (Command, u16) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trustlaunch"));
    cmd.args(["vtpm", "socket", "--tpm2", "--no-ek-cert"])
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.with_extension("stderr")).expect("stderr file"));
    (cmd, port)
}

/// Start a server on `dir` with `extra` arguments, and wait until its socket is bound
/// (its pid file is written). A port taken meanwhile by another process is retried.
pub fn start_with(dir: &Path, extra: &[String]) -> Server {
    let pid_file = dir.with_extension("pid");
    for _ in 0..10 {
        let _ = std::fs::remove_file(&pid_file);
        let (mut cmd, port) = command_for(dir, extra);
        cmd.arg("--pid").arg(format!("file={}", pid_file.display()));
        let mut child = cmd.spawn().expect("spawn trustlaunch vtpm socket");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if pid_file.exists() {
                return Server { child, port };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default();
                if err.contains("cannot listen") {
                    break;
                }
                panic!("the server exited ({status}) instead of starting: {err}");
            }
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    panic!("no free port for the server");
}

/// Run a server that is expected to refuse to start: its exit success and stderr.
pub fn refused(dir: &Path, extra: &[String]) -> String {
    use wait_timeout::ChildExt;
    let (mut cmd, _) = command_for(dir, extra);
    let mut child = cmd.spawn().expect("spawn trustlaunch vtpm socket");
    let status = match child.wait_timeout(Duration::from_secs(20)).expect("wait") {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("the server started, but it should have refused: {extra:?}");
        }
    };
    let err = std::fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default();
    assert!(!status.success(), "exit {status} for {extra:?}: {err}");
    err
}

impl Server {
    pub fn connect(&mut self, dir: &Path) -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                return s;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let err = std::fs::read_to_string(dir.with_extension("stderr")).unwrap_or_default();
                panic!("the server exited ({status}) instead of starting: {err}");
            }
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }
}
