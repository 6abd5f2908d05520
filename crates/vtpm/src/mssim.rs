//! The Microsoft TPM 2.0 reference simulator's TCP protocol (`TpmTcpProtocol.h`,
//! `TcpServer.c`): a command port N and a platform port N+1. All words big-endian.
//!
//! Command port: `TPM_SEND_COMMAND` (u32 8, u8 locality, u32 size, command) answered
//! with u32 size, response, u32 0; `TPM_REMOTE_HANDSHAKE`, `TPM_SET_ALTERNATIVE_RESULT`,
//! `TPM_SESSION_END` (closes) and `TPM_STOP` (stops the server).
//!
//! Platform port: each u32 signal is answered with u32 0 (u32 1 and a close for an
//! unknown one). POWER_ON powers on and runs _TPM_Init unless already on (tpm2-tss
//! sends it at every TCTI initialisation, so it must not reset a running TPM);
//! POWER_OFF saves the state and powers off; RESET runs _TPM_Init if on.
//! Signals for hardware the engine does not model (NV availability, physical
//! presence, cancel, RSA key cache, clock restart) are acknowledged and ignored.

use crate::instance::{error_response, response_code, Instance, TPM_RC_COMMAND_SIZE};
use crate::net::{
    accept_loop, read_exact_by, read_first, Connections, First, Listener, StopHandle, Stream,
};
use crate::Error;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tpm::MAX_COMMAND_SIZE;

/// Signals and commands (`TpmTcpProtocol.h`).
pub mod sig {
    pub const POWER_ON: u32 = 1;
    pub const POWER_OFF: u32 = 2;
    pub const PHYS_PRES_ON: u32 = 3;
    pub const PHYS_PRES_OFF: u32 = 4;
    pub const HASH_START: u32 = 5;
    pub const HASH_DATA: u32 = 6;
    pub const HASH_END: u32 = 7;
    pub const SEND_COMMAND: u32 = 8;
    pub const CANCEL_ON: u32 = 9;
    pub const CANCEL_OFF: u32 = 10;
    pub const NV_ON: u32 = 11;
    pub const NV_OFF: u32 = 12;
    pub const KEY_CACHE_ON: u32 = 13;
    pub const KEY_CACHE_OFF: u32 = 14;
    pub const REMOTE_HANDSHAKE: u32 = 15;
    pub const SET_ALTERNATIVE_RESULT: u32 = 16;
    pub const RESET: u32 = 17;
    pub const RESTART: u32 = 18;
    pub const SESSION_END: u32 = 20;
    pub const STOP: u32 = 21;
    pub const GET_COMMAND_RESPONSE_SIZES: u32 = 25;
    pub const TEST_FAILURE_MODE: u32 = 30;
}

/// The simulator's protocol version, answered to TPM_REMOTE_HANDSHAKE.
const SERVER_VERSION: u32 = 1;
/// tpmPlatformAvailable | tpmInRawMode | tpmSupportsPP.
const ENDPOINT_INFO: u32 = 0x01 | 0x04 | 0x08;

/// A running mssim-protocol server's configuration.
#[derive(Debug)]
pub struct MssimConfig {
    /// The command port (N).
    pub command: Listener,
    /// The platform port (N+1).
    pub platform: Listener,
    /// Once the first byte of a request arrived, the rest must follow within this.
    pub request_timeout: Duration,
    /// Most connections (both ports together) served at once.
    pub max_connections: usize,
}

impl MssimConfig {
    /// Defaults: 10 s per request, 64 connections.
    pub fn new(command: Listener, platform: Listener) -> MssimConfig {
        MssimConfig {
            command,
            platform,
            request_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// Largest command and response seen, for TPM_GET_COMMAND_RESPONSE_SIZES.
#[derive(Default)]
struct Sizes {
    command_size: u32,
    command_code: [u8; 4],
    response_size: u32,
    response_code: [u8; 4],
}

struct Shared {
    instance: Arc<Instance>,
    conns: Arc<Connections>,
    stop: StopHandle,
    request_timeout: Duration,
    sizes: Mutex<Sizes>,
}

/// Serve `instance` until `stop` is triggered or a client sends TPM_STOP. On the way
/// out, connections are closed and the state saved; an error saving it is returned.
pub fn serve(instance: Arc<Instance>, config: MssimConfig, stop: StopHandle) -> Result<(), Error> {
    let log = instance.log().clone();
    let shared = Arc::new(Shared {
        instance: Arc::clone(&instance),
        conns: Connections::new(config.max_connections, stop.clone()),
        stop: stop.clone(),
        request_timeout: config.request_timeout,
        sizes: Mutex::new(Sizes::default()),
    });
    log.info(format_args!(
        "mssim command port on {}",
        config.command.describe()
    ));
    log.info(format_args!(
        "mssim platform port on {}",
        config.platform.describe()
    ));
    let result = accept_loop(
        &[&config.command, &config.platform],
        &stop,
        &log,
        |i, stream| {
            let sh = Arc::clone(&shared);
            if i == 0 {
                shared
                    .conns
                    .spawn("command", stream, &log, move |s| serve_command(&sh, s));
            } else {
                shared
                    .conns
                    .spawn("platform", stream, &log, move |s| serve_platform(&sh, s));
            }
        },
    );
    stop.stop();
    shared.conns.close_all();
    let saved = instance.persist();
    log.info("mssim server stopped");
    result.map_err(Error::Io)?;
    saved
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Read the u32 that starts a request; None when the peer closed between requests.
fn read_code(s: &mut Stream, timeout: Duration) -> io::Result<Option<(u32, Instant)>> {
    let mut word = [0u8; 4];
    let n = match read_first(s, &mut word)? {
        First::Closed => return Ok(None),
        First::Got(n) => n,
    };
    let deadline = Instant::now() + timeout;
    read_exact_by(s, &mut word[n..], deadline)?;
    Ok(Some((be32(&word), deadline)))
}

fn read_u32(s: &mut Stream, deadline: Instant) -> io::Result<u32> {
    let mut word = [0u8; 4];
    read_exact_by(s, &mut word, deadline)?;
    Ok(be32(&word))
}

fn serve_command(sh: &Shared, mut s: Stream) {
    let log = sh.instance.log();
    let _ = s.set_write_timeout(Some(sh.request_timeout));
    if let Err(e) = command_loop(sh, &mut s) {
        log.info(format_args!("mssim command connection closed: {e}"));
    }
    s.shutdown();
}

fn command_loop(sh: &Shared, s: &mut Stream) -> io::Result<()> {
    let log = sh.instance.log();
    loop {
        let Some((code, deadline)) = read_code(s, sh.request_timeout)? else {
            return Ok(());
        };
        match code {
            sig::SEND_COMMAND => {
                let mut head = [0u8; 5];
                read_exact_by(s, &mut head, deadline)?;
                let locality = head[0];
                let size = be32(&head[1..5]) as usize;
                if size > MAX_COMMAND_SIZE {
                    log.info(format_args!(
                        "mssim: command size {size} above {MAX_COMMAND_SIZE}; answering and closing"
                    ));
                    write_framed(s, &error_response(TPM_RC_COMMAND_SIZE))?;
                    return Ok(());
                }
                let mut command = vec![0u8; size];
                read_exact_by(s, &mut command, deadline)?;
                let response = if sh.instance.is_running() {
                    if size < 10 {
                        error_response(TPM_RC_COMMAND_SIZE)
                    } else {
                        sh.instance.execute(Some(locality), &command)
                    }
                } else {
                    // As the reference simulator: a powered-off TPM answers nothing.
                    Vec::new()
                };
                record_sizes(sh, &command, &response);
                if log.enabled(crate::log::level::DEBUG) {
                    let cc = command.get(6..10).map(be32).unwrap_or(0);
                    log.debug(format_args!(
                        "mssim: {} ({cc:#x}) at locality {locality}, {size} bytes -> rc {:#x} ({} bytes)",
                        tpm::command_name(cc).unwrap_or("unknown command"),
                        response_code(&response).unwrap_or(0),
                        response.len()
                    ));
                }
                log.trace_bytes("mssim: command", &command);
                log.trace_bytes("mssim: response", &response);
                write_framed(s, &response)?;
            }
            sig::REMOTE_HANDSHAKE => {
                let client_version = read_u32(s, deadline)?;
                if client_version == 0 {
                    log.info("mssim: handshake with client version 0; closing");
                    return Ok(());
                }
                let mut out = Vec::with_capacity(12);
                for v in [SERVER_VERSION, ENDPOINT_INFO, 0] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                s.write_all(&out)?;
            }
            sig::SET_ALTERNATIVE_RESULT => {
                let _ = read_u32(s, deadline)?;
                s.write_all(&0u32.to_be_bytes())?;
            }
            sig::SESSION_END => return Ok(()),
            sig::STOP => {
                log.info("mssim: TPM_STOP on the command port: stopping");
                sh.stop.stop();
                return Ok(());
            }
            sig::HASH_START | sig::HASH_DATA | sig::HASH_END => {
                log.warn(
                    "mssim: _TPM_Hash_Start/Data/End are not supported by the engine yet; closing",
                );
                return Ok(());
            }
            other => {
                log.info(format_args!(
                    "mssim: unknown command-port request {other}; closing"
                ));
                return Ok(());
            }
        }
    }
}

fn write_framed(s: &mut Stream, response: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(response.len() + 8);
    out.extend_from_slice(&(response.len() as u32).to_be_bytes());
    out.extend_from_slice(response);
    out.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&out)
}

fn record_sizes(sh: &Shared, command: &[u8], response: &[u8]) {
    let mut z = sh.sizes.lock().unwrap_or_else(|e| e.into_inner());
    if command.len() as u32 > z.command_size {
        z.command_size = command.len() as u32;
        if let Some(cc) = command.get(6..10) {
            z.command_code.copy_from_slice(cc);
        }
    }
    if response.len() as u32 > z.response_size {
        z.response_size = response.len() as u32;
        if let Some(rc) = response.get(6..10) {
            z.response_code.copy_from_slice(rc);
        }
    }
}

fn serve_platform(sh: &Shared, mut s: Stream) {
    let log = sh.instance.log();
    let _ = s.set_write_timeout(Some(sh.request_timeout));
    if let Err(e) = platform_loop(sh, &mut s) {
        log.info(format_args!("mssim platform connection closed: {e}"));
    }
    s.shutdown();
}

fn platform_loop(sh: &Shared, s: &mut Stream) -> io::Result<()> {
    let inst = &sh.instance;
    let log = inst.log();
    loop {
        let Some((signal, _)) = read_code(s, sh.request_timeout)? else {
            return Ok(());
        };
        log.write(
            crate::log::level::DEBUG,
            format_args!("mssim: platform signal {signal}"),
        );
        let ack = match signal {
            sig::POWER_ON => match inst.power_on() {
                Ok(true) => {
                    log.info("mssim: power on");
                    0
                }
                Ok(false) => 0,
                Err(e) => {
                    log.error(format_args!("mssim: power on: {e}"));
                    1
                }
            },
            sig::POWER_OFF => {
                log.info("mssim: power off");
                match inst.power_off() {
                    Ok(()) => 0,
                    Err(_) => 1,
                }
            }
            sig::RESET => {
                if inst.is_running() {
                    log.info("mssim: reset");
                    match inst.init() {
                        Ok(()) => 0,
                        Err(_) => 1,
                    }
                } else {
                    0
                }
            }
            sig::PHYS_PRES_ON
            | sig::PHYS_PRES_OFF
            | sig::CANCEL_ON
            | sig::CANCEL_OFF
            | sig::NV_ON
            | sig::NV_OFF
            | sig::KEY_CACHE_ON
            | sig::KEY_CACHE_OFF
            | sig::RESTART => 0,
            sig::GET_COMMAND_RESPONSE_SIZES => {
                // The reference writes its statistics struct as it sits in memory:
                // sizes in host byte order, command/response codes as wire bytes.
                let z = std::mem::take(&mut *sh.sizes.lock().unwrap_or_else(|e| e.into_inner()));
                let mut out = 16u32.to_be_bytes().to_vec();
                out.extend_from_slice(&z.command_size.to_ne_bytes());
                out.extend_from_slice(&z.command_code);
                out.extend_from_slice(&z.response_size.to_ne_bytes());
                out.extend_from_slice(&z.response_code);
                s.write_all(&out)?;
                0
            }
            sig::SESSION_END => return Ok(()),
            sig::STOP => {
                log.info("mssim: TPM_STOP on the platform port: stopping");
                sh.stop.stop();
                return Ok(());
            }
            other => {
                log.info(format_args!(
                    "mssim: unknown platform signal {other}; closing"
                ));
                s.write_all(&1u32.to_be_bytes())?;
                return Ok(());
            }
        };
        s.write_all(&u32::to_be_bytes(ack))?;
    }
}
