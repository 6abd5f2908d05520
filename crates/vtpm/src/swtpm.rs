//! The swtpm `socket` transport: a data channel carrying raw TPM 2.0 commands and a
//! control channel speaking swtpm's ioctl protocol (`tpm_ioctl.h`, "Commands used by
//! the non-CUSE TPMs"): a big-endian u32 command code and its payload; every response
//! but CMD_GET_CAPABILITY's starts with a u32 result code.
//!
//! Compatibility notes (checked against swtpm 0.7.1 and its current sources):
//! - data connections may be short-lived (tpm2-tss's swtpm TCTI connects once per
//!   command) or persistent (QEMU); several may be open at once, each on its own thread;
//! - a data command may carry the TCG "send command" prefix (u32 8, u8 locality,
//!   u32 size), answered with a u32 size prefix and a u32 0 trailer;
//! - a control request must arrive within 500 ms of its first byte, as swtpm expects;
//!   a control connection may stay idle for any length of time;
//! - CMD_SHUTDOWN saves the state and ends the server; CMD_STOP only powers the TPM
//!   off (the process keeps serving, waiting for CMD_INIT), as in swtpm;
//! - CMD_GET_STATEBLOB answers the whole blob from the requested offset in one response
//!   (`totlength` = `length`), as swtpm's socket server does and QEMU requires;
//!   CMD_SET_STATEBLOB takes the whole blob in one request (header, then `length`
//!   bytes, which may follow in separate writes); see [`crate::stateblob`];
//! - with `terminate` (`--terminate`), the server ends when its data connection closes.

use crate::instance::{error_response, response_code, Instance, MAX_LOCALITY, TPM_RC_COMMAND_SIZE};
use crate::log::Log;
use crate::net::{
    accept_loop, read_exact_by, read_first, Connections, First, Listener, StopHandle, Stream,
};
use crate::stateblob::{BlobError, BlobType};
use crate::Error;
use rustix::event::{poll, PollFd, PollFlags};
use std::io::{self, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tpm::MAX_COMMAND_SIZE;

/// Control channel command codes (`CMD_*` in swtpm's `tpm_ioctl.h`).
pub mod cmd {
    pub const GET_CAPABILITY: u32 = 0x01;
    pub const INIT: u32 = 0x02;
    pub const SHUTDOWN: u32 = 0x03;
    pub const GET_TPMESTABLISHED: u32 = 0x04;
    pub const SET_LOCALITY: u32 = 0x05;
    pub const HASH_START: u32 = 0x06;
    pub const HASH_DATA: u32 = 0x07;
    pub const HASH_END: u32 = 0x08;
    pub const CANCEL_TPM_CMD: u32 = 0x09;
    pub const STORE_VOLATILE: u32 = 0x0a;
    pub const RESET_TPMESTABLISHED: u32 = 0x0b;
    pub const GET_STATEBLOB: u32 = 0x0c;
    pub const SET_STATEBLOB: u32 = 0x0d;
    pub const STOP: u32 = 0x0e;
    pub const GET_CONFIG: u32 = 0x0f;
    pub const SET_DATAFD: u32 = 0x10;
    pub const SET_BUFFERSIZE: u32 = 0x11;
    pub const GET_INFO: u32 = 0x12;
}

/// Capability bits answered to CMD_GET_CAPABILITY (`PTM_CAP_*`).
pub mod cap {
    pub const INIT: u64 = 1;
    pub const SHUTDOWN: u64 = 1 << 1;
    pub const GET_TPMESTABLISHED: u64 = 1 << 2;
    pub const SET_LOCALITY: u64 = 1 << 3;
    pub const HASHING: u64 = 1 << 4;
    pub const CANCEL_TPM_CMD: u64 = 1 << 5;
    pub const STORE_VOLATILE: u64 = 1 << 6;
    pub const RESET_TPMESTABLISHED: u64 = 1 << 7;
    pub const GET_STATEBLOB: u64 = 1 << 8;
    pub const SET_STATEBLOB: u64 = 1 << 9;
    pub const STOP: u64 = 1 << 10;
    pub const GET_CONFIG: u64 = 1 << 11;
    pub const SET_DATAFD: u64 = 1 << 12;
    pub const SET_BUFFERSIZE: u64 = 1 << 13;
    pub const GET_INFO: u64 = 1 << 14;
    pub const SEND_COMMAND_HEADER: u64 = 1 << 15;
}

/// Result codes of the control channel (TPM 1.2 return codes, as swtpm uses them).
pub mod res {
    pub const SUCCESS: u32 = 0x00;
    pub const BAD_PARAMETER: u32 = 0x03;
    pub const FAIL: u32 = 0x09;
    pub const KEYNOTFOUND: u32 = 0x0d;
    pub const BAD_ORDINAL: u32 = 0x0a;
    pub const IOERROR: u32 = 0x1f;
    pub const BAD_LOCALITY: u32 = 0x3d;
}

/// What this server implements. Not offered: HASHING (the engine has no
/// _TPM_Hash_Start/Data/End entry points yet); GET/SET_STATEBLOB only once the engine
/// can export its volatile state ([`crate::volatile::SUPPORTED`]): QEMU needs the
/// volatile blob to migrate, and without these bits it blocks migration up front
/// instead of failing one. Permanent blobs are served either way.
pub const CAPABILITIES: u64 = STATEBLOB_CAPS
    | cap::INIT
    | cap::SHUTDOWN
    | cap::GET_TPMESTABLISHED
    | cap::SET_LOCALITY
    | cap::CANCEL_TPM_CMD
    | cap::STORE_VOLATILE
    | cap::RESET_TPMESTABLISHED
    | cap::STOP
    | cap::GET_CONFIG
    | cap::SET_DATAFD
    | cap::SET_BUFFERSIZE
    | cap::GET_INFO
    | cap::SEND_COMMAND_HEADER;

const STATEBLOB_CAPS: u64 = if crate::volatile::SUPPORTED {
    cap::GET_STATEBLOB | cap::SET_STATEBLOB
} else {
    0
};

/// `PTM_STATE_FLAG_ENCRYPTED`: in a CMD_GET_STATEBLOB response, the blob is encrypted
/// (never, here); in a CMD_SET_STATEBLOB request, the sender says it is.
pub const STATE_FLAG_ENCRYPTED: u32 = 2;
/// Largest state blob CMD_SET_STATEBLOB accepts.
pub const MAX_STATE_BLOB: usize = 64 * 1024 * 1024;

/// `PTM_INIT_FLAG_DELETE_VOLATILE`: this host keeps no volatile state file, so there
/// is never anything to delete; the flag is accepted.
pub const INIT_FLAG_DELETE_VOLATILE: u32 = 1;

/// CMD_GET_INFO flags (`SWTPM_INFO_*`).
pub const INFO_TPMSPECIFICATION: u64 = 1;
pub const INFO_TPMATTRIBUTES: u64 = 1 << 1;
/// Largest CMD_GET_INFO chunk (`PTM_GETINFO_SIZE`).
const GETINFO_SIZE: usize = 3 * 1024;

/// Reported by CMD_GET_INFO, matching what the engine reports through
/// TPM2_GetCapability: spec revision 159, TPM_PT_MANUFACTURER "TLCH", and
/// TPM_PT_FIRMWARE_VERSION_1 = major << 16 | minor of the workspace version.
const INFO_SPEC: &str = r#""TPMSpecification":{"family":"2.0","level":0,"revision":159}"#;
const INFO_MANUFACTURER: &[u8; 4] = b"TLCH";

fn info_attributes() -> String {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    format!(
        r#""TPMAttributes":{{"manufacturer":"id:{:08X}","version":"id:{:08X}","model":"trustlaunch"}}"#,
        u32::from_be_bytes(*INFO_MANUFACTURER),
        (major << 16) | (minor & 0xffff)
    )
}

/// TPM_SEND_COMMAND, the first word of the optional TCG command prefix.
const TCG_SEND_COMMAND: u32 = 8;

/// The whole control request must arrive within this time of its first byte
/// (swtpm's rule; its clients send each request in one write).
const CTRL_REQUEST_DEADLINE: Duration = Duration::from_millis(500);

/// A running swtpm-protocol server's configuration: already-bound listeners plus
/// behaviour switches. Build with [`SocketConfig::new`] and adjust the fields.
#[derive(Debug)]
pub struct SocketConfig {
    /// The data channel (`--server`); `None` when data only comes via CMD_SET_DATAFD.
    pub data: Option<Listener>,
    /// The control channel (`--ctrl`).
    pub ctrl: Option<Listener>,
    /// Close a data connection after each response (`--server ...,disconnect`).
    pub disconnect: bool,
    /// Refuse CMD_SET_LOCALITY to locality 4 (`--locality reject-locality-4`).
    pub reject_locality_4: bool,
    /// Once the first byte of a data command arrived, the rest must follow within this.
    pub request_timeout: Duration,
    /// Most connections (data and control together) served at once.
    pub max_connections: usize,
    /// End the server once a data connection (or the CMD_SET_DATAFD channel) closes
    /// (`--terminate`). Data connections are then served one thread each.
    pub terminate: bool,
}

impl SocketConfig {
    /// Defaults: keep data connections open, 10 s per request, 64 connections.
    pub fn new(data: Option<Listener>, ctrl: Option<Listener>) -> SocketConfig {
        SocketConfig {
            data,
            ctrl,
            disconnect: false,
            reject_locality_4: false,
            request_timeout: Duration::from_secs(10),
            max_connections: 64,
            terminate: false,
        }
    }
}

struct Shared {
    instance: Arc<Instance>,
    conns: Arc<Connections>,
    stop: StopHandle,
    disconnect: bool,
    reject_locality_4: bool,
    request_timeout: Duration,
    datafd_active: AtomicBool,
    terminate: bool,
}

/// Serve `instance` until `stop` is triggered (or CMD_SHUTDOWN arrives): one event loop on
/// this thread for the control and data channels (see `serve_loop`). On the way out,
/// connections are closed and the state saved; an error saving it is returned.
pub fn serve(instance: Arc<Instance>, config: SocketConfig, stop: StopHandle) -> Result<(), Error> {
    let log = instance.log().clone();
    let shared = Arc::new(Shared {
        instance: Arc::clone(&instance),
        conns: Connections::new(config.max_connections, stop.clone()),
        stop: stop.clone(),
        disconnect: config.disconnect,
        reject_locality_4: config.reject_locality_4,
        request_timeout: config.request_timeout,
        datafd_active: AtomicBool::new(false),
        terminate: config.terminate,
    });
    let mut listeners: Vec<(&Listener, bool)> = Vec::new();
    if let Some(l) = &config.data {
        log.info(format_args!("swtpm data channel on {}", l.describe()));
        listeners.push((l, false));
    }
    if let Some(l) = &config.ctrl {
        log.info(format_args!("swtpm control channel on {}", l.describe()));
        listeners.push((l, true));
    }
    // One event loop per instance serves its control channel, its data listener and a data
    // channel passed with CMD_SET_DATAFD (as a TPM runs one command at a time): no thread
    // per connection, non-blocking data reads so a slow client stalls nobody. With
    // --terminate the data listener's one connection is served on its own thread instead.
    let result = std::thread::scope(|scope| {
        let (data, until_closed) = match &config.data {
            Some(l) if config.terminate => {
                let sh = Arc::clone(&shared);
                let log = log.clone();
                (
                    None,
                    Some(scope.spawn(move || serve_data_until_closed(&sh, l, &log))),
                )
            }
            other => (other.as_ref(), None),
        };
        let loop_result = if config.ctrl.is_some() || data.is_some() {
            serve_loop(&shared, config.ctrl.as_ref(), data, config.max_connections)
        } else {
            stop.wait();
            Ok(())
        };
        stop.stop();
        let data_result = match until_closed.map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("data channel loop panicked")),
            None => Ok(()),
        };
        loop_result.and(data_result)
    });
    let _ = &listeners;
    stop.stop();
    shared.conns.close_all();
    let saved = instance.persist();
    log.info("swtpm server stopped");
    result.map_err(Error::Io)?;
    saved
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// One data connection in the event loop: bytes of the request so far, when it began, and
/// response bytes not yet written.
struct DataConn {
    stream: Stream,
    input: Vec<u8>,
    begun: Option<Instant>,
    output: Vec<u8>,
    written: usize,
    close_after_write: bool,
}

/// What a buffer holds: a complete request (locality, command, whether prefixed), not yet
/// enough, or an invalid size.
enum Framed {
    Complete {
        locality: Option<u8>,
        size: usize,
        offset: usize,
        prefixed: bool,
    },
    Partial,
    BadSize {
        size: usize,
        prefixed: bool,
    },
}

fn frame(input: &[u8]) -> Framed {
    if input.len() < 10 {
        return Framed::Partial;
    }
    let tag = u16::from_be_bytes([input[0], input[1]]);
    let prefixed = tag != 0x8001 && tag != 0x8002 && be32(&input[0..4]) == TCG_SEND_COMMAND;
    let (locality, size, offset) = if prefixed {
        (Some(input[4]), be32(&input[5..9]) as usize, 9)
    } else {
        (None, be32(&input[2..6]) as usize, 0)
    };
    if !(10..=MAX_COMMAND_SIZE).contains(&size) {
        return Framed::BadSize { size, prefixed };
    }
    if input.len() < offset + size {
        return Framed::Partial;
    }
    Framed::Complete {
        locality,
        size,
        offset,
        prefixed,
    }
}

/// A connection of an instance's event loop.
enum Conn {
    Ctrl(Stream),
    /// A data connection; `passed`: the channel CMD_SET_DATAFD handed over.
    Data {
        c: DataConn,
        passed: bool,
    },
}

fn data_conn(stream: Stream) -> DataConn {
    DataConn {
        stream,
        input: Vec::new(),
        begun: None,
        output: Vec::new(),
        written: 0,
        close_after_write: false,
    }
}

/// An instance's event loop: accept on its control and data listeners, answer control
/// requests as they arrive (a request is read once its first bytes are there, the rest
/// within the control deadline, so a stalled control client delays only this instance,
/// only that long), read whatever data has arrived, execute each complete command, write
/// responses without blocking; data requests that stall past the request timeout are
/// dropped. Runs until the stop handle fires.
fn serve_loop(
    sh: &Arc<Shared>,
    ctrl: Option<&Listener>,
    data: Option<&Listener>,
    max: usize,
) -> io::Result<()> {
    let log = sh.instance.log().clone();
    for l in [ctrl, data].into_iter().flatten() {
        l.set_nonblocking(true)?;
    }
    let mut conns: Vec<Conn> = Vec::new();
    // The read buffer is allocated with the first data connection: an idle instance (most
    // of a host's) keeps none.
    let mut buf = Vec::new();
    while !sh.stop.is_stopped() {
        let now = Instant::now();
        let timeout = conns
            .iter()
            .filter_map(|c| match c {
                Conn::Data { c, .. } => c.begun,
                Conn::Ctrl(_) => None,
            })
            .map(|b| (b + sh.request_timeout).saturating_duration_since(now))
            .min();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(conns.len() + 3);
            fds.push(PollFd::new(sh.stop.wake_fd(), PollFlags::IN));
            for l in [ctrl, data].into_iter().flatten() {
                fds.push(PollFd::new(l, PollFlags::IN));
            }
            for c in &conns {
                fds.push(match c {
                    Conn::Ctrl(s) => PollFd::new(s, PollFlags::IN),
                    Conn::Data { c, .. } if c.written < c.output.len() => {
                        PollFd::new(&c.stream, PollFlags::OUT)
                    }
                    Conn::Data { c, .. } => PollFd::new(&c.stream, PollFlags::IN),
                });
            }
            let ts = timeout.map(|t| rustix::event::Timespec {
                tv_sec: t.as_secs() as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        if sh.stop.is_stopped() {
            break;
        }
        let listeners = usize::from(ctrl.is_some()) + usize::from(data.is_some());
        // Existing connections first (those accepted below are read next round).
        let now = Instant::now();
        let mut keep = Vec::with_capacity(conns.len() + 1);
        for (i, conn) in conns.drain(..).enumerate() {
            let polled = ready.get(1 + listeners + i).copied().unwrap_or(false);
            match conn {
                Conn::Ctrl(mut s) => {
                    if !polled {
                        keep.push(Conn::Ctrl(s));
                        continue;
                    }
                    match ctrl_round(sh, &mut s) {
                        CtrlNext::Keep => keep.push(Conn::Ctrl(s)),
                        CtrlNext::Close => s.shutdown(),
                        CtrlNext::Adopt(passed) => {
                            keep.push(Conn::Ctrl(s));
                            match passed.set_nonblocking(true) {
                                Ok(()) => keep.push(Conn::Data {
                                    c: data_conn(passed),
                                    passed: true,
                                }),
                                Err(e) => {
                                    log.warn(format_args!("CMD_SET_DATAFD: {e}"));
                                    sh.datafd_active.store(false, Ordering::SeqCst);
                                }
                            }
                        }
                    }
                }
                Conn::Data { mut c, passed } => {
                    if buf.is_empty() {
                        buf.resize(MAX_COMMAND_SIZE + 16, 0);
                    }
                    let alive = if polled {
                        pump(sh, &mut c, &mut buf)
                    } else if c
                        .begun
                        .is_some_and(|b| now.duration_since(b) >= sh.request_timeout)
                    {
                        log.info("data: request incomplete at deadline; closing");
                        false
                    } else {
                        true
                    };
                    if alive {
                        keep.push(Conn::Data { c, passed });
                    } else {
                        c.stream.shutdown();
                        if passed {
                            sh.datafd_active.store(false, Ordering::SeqCst);
                            if sh.terminate {
                                log.info("data channel closed: terminating (--terminate)");
                                sh.stop.stop();
                            }
                        }
                    }
                }
            }
            if sh.stop.is_stopped() {
                break;
            }
        }
        conns = keep;
        // A new connection: one per listener and wake-up (the poll is level-triggered and
        // says again if more wait), accepted non-blocking; data clients send their command
        // right after connecting.
        let mut slot = 1;
        for (l, is_ctrl) in [(ctrl, true), (data, false)] {
            let Some(l) = l else { continue };
            let is_ready = ready.get(slot).copied().unwrap_or(false);
            slot += 1;
            if !is_ready {
                continue;
            }
            let open = conns
                .iter()
                .filter(|c| matches!(c, Conn::Ctrl(_)) == is_ctrl)
                .count();
            let what = if is_ctrl { "ctrl" } else { "data" };
            let Some(s) = accept_below(l, open, max, what, &log) else {
                continue;
            };
            if is_ctrl {
                match s.set_nonblocking(false) {
                    Ok(()) => {
                        let _ = s.set_write_timeout(Some(sh.request_timeout));
                        conns.push(Conn::Ctrl(s));
                    }
                    Err(e) => log.warn(format_args!("ctrl: {e}")),
                }
            } else {
                conns.push(Conn::Data {
                    c: data_conn(s),
                    passed: false,
                });
            }
        }
    }
    for c in &conns {
        match c {
            Conn::Ctrl(s) => s.shutdown(),
            Conn::Data { c, passed } => {
                c.stream.shutdown();
                if *passed {
                    sh.datafd_active.store(false, Ordering::SeqCst);
                }
            }
        }
    }
    Ok(())
}

/// One connection accepted (non-blocking) from a listener the poll found ready, unless
/// `open` connections already reach `max` (it is then closed at once). Errors other than
/// "nothing there" are logged and followed by a short pause, so that a poll that stays
/// ready (EMFILE) does not spin.
fn accept_below(
    listener: &Listener,
    open: usize,
    max: usize,
    what: &str,
    log: &Log,
) -> Option<Stream> {
    match listener.accept_nonblocking() {
        Ok(s) if open >= max => {
            log.warn(format_args!(
                "{what}: refusing connection: {max} already open"
            ));
            drop(s);
            None
        }
        Ok(s) => Some(s),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            None
        }
        Err(e) => {
            log.warn(format_args!("accept on {}: {e}", listener.describe()));
            std::thread::sleep(Duration::from_millis(50));
            None
        }
    }
}

/// Move one connection forward: finish a pending write, else read and execute complete
/// commands. Returns false when the connection is done.
fn pump(sh: &Shared, c: &mut DataConn, buf: &mut [u8]) -> bool {
    let log = sh.instance.log();
    if c.written < c.output.len() {
        match c.stream.write(&c.output[c.written..]) {
            Ok(n) => c.written += n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
        if c.written < c.output.len() {
            return true;
        }
        c.output.clear();
        c.written = 0;
        return !c.close_after_write;
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                c.input.extend_from_slice(&buf[..n]);
                if c.begun.is_none() {
                    c.begun = Some(Instant::now());
                }
                // Stop at a complete request (no extra read that would only say EAGAIN).
                if !matches!(frame(&c.input), Framed::Partial)
                    || c.input.len() > 2 * MAX_COMMAND_SIZE + 32
                {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    // Execute every complete request in the buffer, in order.
    while c.output.is_empty() {
        match frame(&c.input) {
            Framed::Partial => break,
            Framed::BadSize { size, prefixed } => {
                log.info(format_args!(
                    "data: command size {size} out of range 10..={MAX_COMMAND_SIZE}; closing"
                ));
                c.output = framed_response(prefixed, &error_response(TPM_RC_COMMAND_SIZE));
                c.close_after_write = true;
                c.input.clear();
            }
            Framed::Complete {
                locality,
                size,
                offset,
                prefixed,
            } => {
                let command: Vec<u8> = c.input.drain(..offset + size).skip(offset).collect();
                let response = execute_logged(sh, log, locality, &command);
                c.output = framed_response(prefixed, &response);
                c.close_after_write = sh.disconnect;
            }
        }
        c.begun = if c.input.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        // Try to write at once; most responses fit the socket buffer.
        match c.stream.write(&c.output) {
            Ok(n) => c.written = n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
        if c.written == c.output.len() {
            c.output.clear();
            c.written = 0;
            if c.close_after_write {
                return false;
            }
        }
    }
    true
}

fn framed_response(prefixed: bool, response: &[u8]) -> Vec<u8> {
    if prefixed {
        let mut framed = Vec::with_capacity(response.len() + 8);
        framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
        framed.extend_from_slice(response);
        framed.extend_from_slice(&0u32.to_be_bytes());
        framed
    } else {
        response.to_vec()
    }
}

/// `--terminate`: serve data connections (one thread each) until the first one closes,
/// then stop the server.
fn serve_data_until_closed(sh: &Arc<Shared>, listener: &Listener, log: &Log) -> io::Result<()> {
    accept_loop(&[listener], &sh.stop, log, |_, stream| {
        let sh2 = Arc::clone(sh);
        sh.conns.spawn("data", stream, log, move |s| {
            serve_data(&sh2, s);
            sh2.instance
                .log()
                .info("data connection closed: terminating (--terminate)");
            sh2.stop.stop();
        });
    })
}

/// Serve one data connection: commands in, responses out, until the peer closes.
fn serve_data(sh: &Shared, mut s: Stream) {
    let log = sh.instance.log();
    let _ = s.set_write_timeout(Some(sh.request_timeout));
    loop {
        match data_round(sh, &mut s) {
            Ok(true) if !sh.disconnect => continue,
            Ok(_) => break,
            Err(e) => {
                log.info(format_args!("data connection closed: {e}"));
                break;
            }
        }
    }
    s.shutdown();
}

/// One request/response exchange. Ok(false) when the connection is to be closed.
fn data_round(sh: &Shared, s: &mut Stream) -> io::Result<bool> {
    let log = sh.instance.log();
    let mut hdr = [0u8; 10];
    let n = match read_first(s, &mut hdr)? {
        First::Closed => return Ok(false),
        First::Got(n) => n,
    };
    let deadline = Instant::now() + sh.request_timeout;
    read_exact_by(s, &mut hdr[n..], deadline)?;
    let tag = u16::from_be_bytes([hdr[0], hdr[1]]);
    let prefixed = tag != 0x8001 && tag != 0x8002 && be32(&hdr[0..4]) == TCG_SEND_COMMAND;
    let (locality, size, have) = if prefixed {
        (Some(hdr[4]), be32(&hdr[5..9]) as usize, &hdr[9..])
    } else {
        (None, be32(&hdr[2..6]) as usize, &hdr[..])
    };
    if !(10..=MAX_COMMAND_SIZE).contains(&size) {
        log.info(format_args!(
            "data: command size {size} out of range 10..={MAX_COMMAND_SIZE}; closing"
        ));
        write_response(s, prefixed, &error_response(TPM_RC_COMMAND_SIZE))?;
        return Ok(false);
    }
    let mut command = vec![0u8; size];
    command[..have.len()].copy_from_slice(have);
    read_exact_by(s, &mut command[have.len()..], deadline)?;
    let response = execute_logged(sh, log, locality, &command);
    write_response(s, prefixed, &response)?;
    Ok(true)
}

/// Execute one framed command (at least a header long) and log it: the prefix's locality,
/// if any, becomes the current locality first (as swtpm does).
fn execute_logged(sh: &Shared, log: &Log, locality: Option<u8>, command: &[u8]) -> Vec<u8> {
    if let Some(loc) = locality {
        sh.instance.set_locality(loc);
    }
    log.trace_bytes("data: command", command);
    let response = sh.instance.execute(locality, command);
    if log.enabled(crate::log::level::DEBUG) {
        let cc = command.get(6..10).map_or(0, be32);
        log.debug(format_args!(
            "data: {} ({cc:#x}, {} bytes) -> rc {:#x} ({} bytes)",
            tpm::command_name(cc).unwrap_or("unknown command"),
            command.len(),
            response_code(&response).unwrap_or(0),
            response.len()
        ));
    }
    log.trace_bytes("data: response", &response);
    response
}

fn write_response(s: &mut Stream, prefixed: bool, response: &[u8]) -> io::Result<()> {
    if prefixed {
        let mut framed = Vec::with_capacity(response.len() + 8);
        framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
        framed.extend_from_slice(response);
        framed.extend_from_slice(&0u32.to_be_bytes());
        s.write_all(&framed)
    } else {
        s.write_all(response)
    }
}

/// Payload bytes a control command needs after its code (`None`: variable-length,
/// not supported, answered and the connection closed).
fn ctrl_payload_len(code: u32) -> Option<usize> {
    Some(match code {
        cmd::INIT | cmd::SET_BUFFERSIZE => 4,
        cmd::SET_LOCALITY | cmd::RESET_TPMESTABLISHED => 1,
        cmd::GET_STATEBLOB => 12,
        cmd::GET_INFO => 16,
        // ptm_setstate's header (flags, type, length); the blob follows.
        cmd::SET_STATEBLOB => 12,
        cmd::HASH_DATA => return None,
        _ => 0,
    })
}

/// Bytes a control request needs in all, as far as what has arrived tells.
fn ctrl_request_len(buf: &[u8]) -> usize {
    if buf.len() < 4 {
        return 4;
    }
    let code = be32(&buf[..4]);
    let fixed = 4 + ctrl_payload_len(code).unwrap_or(0);
    if code == cmd::SET_STATEBLOB && buf.len() >= fixed {
        let blob = be32(&buf[12..16]) as usize;
        // An absurd length is not read: the request is answered as it stands.
        if blob <= MAX_STATE_BLOB {
            return fixed + blob;
        }
    }
    fixed
}

/// Read one control request: the first chunk as it arrives (with any passed file
/// descriptors), then whatever the command still needs, within the deadline (a state
/// blob's body within `blob_timeout`).
fn read_ctrl_request(
    s: &mut Stream,
    blob_timeout: Duration,
) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; 8192];
    let mut fds = Vec::new();
    s.set_read_timeout(None)?;
    let got = match s.unix() {
        Some(u) => loop {
            let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
            match rustix::net::recvmsg(
                u,
                &mut [IoSliceMut::new(&mut buf)],
                &mut anc,
                rustix::net::RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(r) => {
                    for msg in anc.drain() {
                        if let rustix::net::RecvAncillaryMessage::ScmRights(passed) = msg {
                            fds.extend(passed);
                        }
                    }
                    break r.bytes;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        },
        None => match read_first(s, &mut buf)? {
            First::Closed => 0,
            First::Got(n) => n,
        },
    };
    if got == 0 {
        return Ok(None);
    }
    let start = Instant::now();
    let mut len = got;
    loop {
        let needed = ctrl_request_len(&buf[..len]);
        if len >= needed {
            break;
        }
        let deadline = if len >= 16 && be32(&buf[..4]) == cmd::SET_STATEBLOB {
            start + blob_timeout.max(CTRL_REQUEST_DEADLINE)
        } else {
            start + CTRL_REQUEST_DEADLINE
        };
        if buf.len() < needed {
            buf.resize(needed, 0);
        }
        // Incomplete at the deadline: answered as a bad parameter, like swtpm does.
        if read_exact_by(s, &mut buf[len..needed], deadline).is_err() {
            break;
        }
        len = needed;
    }
    buf.truncate(len);
    Ok(Some((buf, fds)))
}

/// What to do after a control response was sent.
enum After {
    Continue,
    /// Serve this data channel (CMD_SET_DATAFD answered with success).
    ServeData(Stream),
    Close,
    Shutdown,
}

/// What becomes of a control connection after a request.
enum CtrlNext {
    Keep,
    Close,
    /// Keep it, and serve this data channel (CMD_SET_DATAFD) in the same loop.
    Adopt(Stream),
}

/// Read one control request from `s` (it has bytes waiting, or was closed), answer it.
fn ctrl_round(sh: &Arc<Shared>, s: &mut Stream) -> CtrlNext {
    let log = sh.instance.log().clone();
    let (req, fds) = match read_ctrl_request(s, sh.request_timeout) {
        Ok(Some(r)) => r,
        Ok(None) => return CtrlNext::Close,
        Err(e) => {
            log.info(format_args!("control connection closed: {e}"));
            return CtrlNext::Close;
        }
    };
    log.trace_bytes("ctrl: request", &req);
    let (response, after) = handle_ctrl(sh, &req, fds);
    log.write(
        crate::log::level::DEBUG,
        format_args!(
            "ctrl: command {:#x} -> {}",
            if req.len() >= 4 { be32(&req) } else { 0 },
            if req.len() >= 4 && be32(&req) == cmd::GET_CAPABILITY {
                "capabilities".to_string()
            } else {
                format!("result {:#x}", response.get(..4).map(be32).unwrap_or(0))
            }
        ),
    );
    log.trace_bytes("ctrl: response", &response);
    if let Err(e) = s.write_all(&response) {
        log.info(format_args!(
            "control connection: cannot send response: {e}"
        ));
        if let After::ServeData(_) = after {
            sh.datafd_active.store(false, Ordering::SeqCst);
        }
        return CtrlNext::Close;
    }
    match after {
        After::Continue => CtrlNext::Keep,
        After::Close => CtrlNext::Close,
        After::ServeData(data) => CtrlNext::Adopt(data),
        After::Shutdown => {
            log.info("CMD_SHUTDOWN: stopping");
            sh.stop.stop();
            CtrlNext::Close
        }
    }
}

fn result(code: u32) -> Vec<u8> {
    code.to_be_bytes().to_vec()
}

/// Handle one complete control request and produce its response.
fn handle_ctrl(sh: &Arc<Shared>, req: &[u8], fds: Vec<OwnedFd>) -> (Vec<u8>, After) {
    let inst = &sh.instance;
    let log = inst.log();
    if req.len() < 4 {
        return (result(res::BAD_PARAMETER), After::Continue);
    }
    let code = be32(req);
    let body = &req[4..];
    let running = inst.is_running();
    let ok = |r: u32| (result(r), After::Continue);
    match code {
        cmd::GET_CAPABILITY => (CAPABILITIES.to_be_bytes().to_vec(), After::Continue),
        cmd::INIT => {
            if body.len() != 4 {
                return ok(res::BAD_PARAMETER);
            }
            let flags = be32(body);
            log.info(format_args!("CMD_INIT (flags {flags:#x})"));
            match inst.init() {
                Ok(()) => ok(res::SUCCESS),
                Err(e) => {
                    log.error(format_args!("CMD_INIT: {e}"));
                    ok(res::FAIL)
                }
            }
        }
        cmd::STOP => {
            if !body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            log.info("CMD_STOP: TPM powered off");
            match inst.power_off() {
                Ok(()) => ok(res::SUCCESS),
                Err(_) => ok(res::FAIL),
            }
        }
        cmd::SHUTDOWN => {
            if !body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            let r = match inst.power_off() {
                Ok(()) => res::SUCCESS,
                Err(_) => res::FAIL,
            };
            (result(r), After::Shutdown)
        }
        cmd::GET_TPMESTABLISHED => {
            if !running {
                return ok(res::BAD_ORDINAL);
            }
            if !body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            // struct ptm_est's response: u32 result, u8 bit, 3 bytes of padding.
            let mut r = result(res::SUCCESS);
            r.extend_from_slice(&[u8::from(inst.established()), 0, 0, 0]);
            (r, After::Continue)
        }
        cmd::RESET_TPMESTABLISHED => {
            if !running {
                return ok(res::BAD_ORDINAL);
            }
            if body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            let loc = body[0];
            if loc > MAX_LOCALITY || !inst.reset_established(loc) {
                return ok(res::BAD_LOCALITY);
            }
            ok(res::SUCCESS)
        }
        cmd::SET_LOCALITY => {
            if body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            let loc = body[0];
            if loc == 4 && sh.reject_locality_4 {
                return ok(res::BAD_LOCALITY);
            }
            if !inst.set_locality(loc) {
                return ok(res::BAD_LOCALITY);
            }
            ok(res::SUCCESS)
        }
        cmd::CANCEL_TPM_CMD => {
            if !running {
                return ok(res::BAD_ORDINAL);
            }
            if !body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            // Commands run to completion; there is never one to cancel.
            ok(res::SUCCESS)
        }
        cmd::STORE_VOLATILE => {
            if !running {
                return ok(res::BAD_ORDINAL);
            }
            if !body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            match inst.persist() {
                Ok(()) => ok(res::SUCCESS),
                Err(_) => ok(res::FAIL),
            }
        }
        cmd::GET_CONFIG => {
            if !body.is_empty() {
                return ok(res::BAD_PARAMETER);
            }
            // Flags: PTM_CONFIG_FLAG_FILE_KEY / _MIGRATION_KEY; no keys exist yet.
            let mut r = result(res::SUCCESS);
            r.extend_from_slice(&0u32.to_be_bytes());
            (r, After::Continue)
        }
        cmd::SET_DATAFD => set_datafd(sh, fds),
        cmd::SET_BUFFERSIZE => {
            if body.len() < 4 {
                return ok(res::BAD_PARAMETER);
            }
            let requested = be32(body);
            if requested > 0 && running {
                return ok(res::BAD_ORDINAL);
            }
            // As swtpm: the size in force (clamped to what the engine supports), then the
            // smallest and largest sizes it accepts. QEMU's tpm-crb asks for 3968.
            let size = sh.instance.set_io_buffer_size(requested as usize) as u32;
            let mut r = result(res::SUCCESS);
            for v in [
                size,
                tpm::Tpm::MIN_IO_BUFFER as u32,
                MAX_COMMAND_SIZE as u32,
            ] {
                r.extend_from_slice(&v.to_be_bytes());
            }
            (r, After::Continue)
        }
        cmd::GET_INFO => {
            if body.len() < 16 {
                return ok(res::BAD_PARAMETER);
            }
            let flags = u64::from_be_bytes([
                body[0], body[1], body[2], body[3], body[4], body[5], body[6], body[7],
            ]);
            let offset = be32(&body[8..12]) as usize;
            let info = info_json(flags);
            if offset >= info.len() {
                return ok(res::BAD_PARAMETER);
            }
            let mut data = info.into_bytes();
            data.push(0); // the C string's terminator is part of the data
            let total = data.len();
            let chunk = &data[offset..total.min(offset + GETINFO_SIZE)];
            let mut r = result(res::SUCCESS);
            r.extend_from_slice(&(total as u32).to_be_bytes());
            r.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            r.extend_from_slice(chunk);
            (r, After::Continue)
        }
        cmd::GET_STATEBLOB => {
            if !running {
                return ok(res::BAD_ORDINAL);
            }
            if body.len() < 12 {
                return ok(res::BAD_PARAMETER);
            }
            (get_state_blob(inst, body), After::Continue)
        }
        cmd::SET_STATEBLOB => set_state_blob(inst, body),
        cmd::HASH_DATA => {
            // A variable-length payload that is not supported: answer, then close so
            // the unread payload cannot be mistaken for further requests.
            log.info(format_args!("control command {code:#x} is not supported"));
            (result(res::BAD_ORDINAL), After::Close)
        }
        _ => {
            log.info(format_args!("control command {code:#x} is not supported"));
            ok(res::BAD_ORDINAL)
        }
    }
}

/// The result code a state blob failure is answered with.
fn blob_result(e: &BlobError) -> u32 {
    match e {
        BlobError::NotRunning | BlobError::Running => res::BAD_ORDINAL,
        BlobError::Format { .. } | BlobError::EmptyPermanent | BlobError::SaveState => {
            res::BAD_PARAMETER
        }
        BlobError::Encrypted => res::KEYNOTFOUND,
        BlobError::Store(_) => res::IOERROR,
        BlobError::Rejected(_)
        | BlobError::Volatile(_)
        | BlobError::Entropy(_)
        | BlobError::Failed => res::FAIL,
    }
}

/// CMD_GET_STATEBLOB (`ptm_getstate`): request u32 flags, u32 type, u32 offset; response
/// u32 result, u32 flags, u32 totlength, u32 length, then the blob from the offset.
fn get_state_blob(inst: &Instance, body: &[u8]) -> Vec<u8> {
    let log = inst.log();
    let ty = be32(&body[4..8]);
    let offset = be32(&body[8..12]) as usize;
    let (code, blob) = match BlobType::from_u32(ty) {
        None => {
            log.info(format_args!("CMD_GET_STATEBLOB: unknown blob type {ty}"));
            (res::BAD_PARAMETER, Vec::new())
        }
        Some(t) => match inst.get_state_blob(t) {
            Ok(b) => {
                log.info(format_args!(
                    "CMD_GET_STATEBLOB: {} blob, {} bytes from offset {offset}",
                    t.name(),
                    b.len()
                ));
                (res::SUCCESS, b)
            }
            Err(e) => {
                log.error(format_args!("CMD_GET_STATEBLOB ({}): {e}", t.name()));
                (blob_result(&e), Vec::new())
            }
        },
    };
    let part = blob.get(offset..).unwrap_or(&[]);
    let mut r = Vec::with_capacity(16 + part.len());
    r.extend_from_slice(&code.to_be_bytes());
    r.extend_from_slice(&0u32.to_be_bytes()); // never encrypted
    r.extend_from_slice(&(part.len() as u32).to_be_bytes());
    r.extend_from_slice(&(part.len() as u32).to_be_bytes());
    r.extend_from_slice(part);
    r
}

/// CMD_SET_STATEBLOB (`ptm_setstate`): u32 flags, u32 type, u32 length, then the blob;
/// answered with a u32 result.
fn set_state_blob(inst: &Instance, body: &[u8]) -> (Vec<u8>, After) {
    let log = inst.log();
    if body.len() < 12 {
        return (result(res::BAD_PARAMETER), After::Close);
    }
    let flags = be32(&body[0..4]);
    let ty = be32(&body[4..8]);
    let length = be32(&body[8..12]) as usize;
    let data = &body[12..];
    if data.len() != length {
        // Too long to take, or cut short by the deadline: the stream is out of step.
        log.error(format_args!(
            "CMD_SET_STATEBLOB: {length}-byte blob announced, {} bytes received{}",
            data.len(),
            if length > MAX_STATE_BLOB {
                format!(" (the limit is {MAX_STATE_BLOB})")
            } else {
                String::new()
            }
        ));
        return (result(res::BAD_PARAMETER), After::Close);
    }
    let Some(t) = BlobType::from_u32(ty) else {
        log.info(format_args!("CMD_SET_STATEBLOB: unknown blob type {ty}"));
        return (result(res::BAD_PARAMETER), After::Continue);
    };
    let code = match inst.set_state_blob(t, data, flags & STATE_FLAG_ENCRYPTED != 0) {
        Ok(()) => res::SUCCESS,
        Err(e) => {
            log.error(format_args!("CMD_SET_STATEBLOB ({}): {e}", t.name()));
            blob_result(&e)
        }
    };
    (result(code), After::Continue)
}

fn info_json(flags: u64) -> String {
    let mut parts = Vec::new();
    if flags & INFO_TPMSPECIFICATION != 0 {
        parts.push(INFO_SPEC.to_string());
    }
    if flags & INFO_TPMATTRIBUTES != 0 {
        parts.push(info_attributes());
    }
    format!("{{{}}}", parts.join(","))
}

/// CMD_SET_DATAFD: the passed descriptor (a connected stream socket) becomes a data
/// connection, as QEMU uses it.
fn set_datafd(sh: &Arc<Shared>, mut fds: Vec<OwnedFd>) -> (Vec<u8>, After) {
    let log = sh.instance.log().clone();
    if fds.is_empty() {
        log.info("CMD_SET_DATAFD without a file descriptor");
        return (result(res::BAD_PARAMETER), After::Continue);
    }
    // Extra descriptors (there should be none) are closed when dropped.
    let fd = fds.swap_remove(0);
    if let Ok(st) = rustix::fs::fstat(&fd) {
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
            log.info("CMD_SET_DATAFD: the descriptor is not a socket");
            return (result(res::BAD_PARAMETER), After::Continue);
        }
    }
    if sh.datafd_active.swap(true, Ordering::SeqCst) {
        return (result(res::IOERROR), After::Continue);
    }
    log.info("CMD_SET_DATAFD: serving the passed data channel");
    (result(res::SUCCESS), After::ServeData(Stream::from(fd)))
}
