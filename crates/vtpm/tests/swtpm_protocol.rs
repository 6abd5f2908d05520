//! The swtpm socket/control protocol over real sockets, with hand-built frames.
//! These check framing and control-channel behaviour, not TPM semantics.

use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vtpm::swtpm::{cmd, res, serve, SocketConfig, CAPABILITIES};
use vtpm::{Instance, Listener, Log, StateDir, StopHandle};

const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0];
const GET_RANDOM_8: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8];
const TPM_RC_FAILURE: u32 = 0x101;
const TPM_RC_COMMAND_SIZE: u32 = 0x142;

struct Server {
    data: std::net::SocketAddr,
    ctrl: std::net::SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<Result<(), vtpm::Error>>>,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(configure: impl FnOnce(&mut SocketConfig)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = TcpListener::bind("127.0.0.1:0").expect("bind data");
        let ctrl = TcpListener::bind("127.0.0.1:0").expect("bind ctrl");
        let (data_addr, ctrl_addr) = (
            data.local_addr().expect("addr"),
            ctrl.local_addr().expect("addr"),
        );
        let instance = Arc::new(
            Instance::open(StateDir::open(dir.path()).expect("statedir"), Log::none())
                .expect("instance"),
        );
        let mut config = SocketConfig::new(
            Some(Listener::from_tcp(data)),
            Some(Listener::from_tcp(ctrl)),
        );
        configure(&mut config);
        let stop = StopHandle::new().expect("stop");
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || serve(instance, config, s2));
        Server {
            data: data_addr,
            ctrl: ctrl_addr,
            stop,
            thread: Some(thread),
            dir,
        }
    }

    fn data(&self) -> TcpStream {
        let s = TcpStream::connect(self.data).expect("connect data");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    fn ctrl(&self) -> TcpStream {
        let s = TcpStream::connect(self.ctrl).expect("connect ctrl");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    /// One control request on a fresh connection, reading `expect` response bytes.
    fn ctrl_cmd(&self, code: u32, payload: &[u8], expect: usize) -> Vec<u8> {
        ctrl_on(&mut self.ctrl(), code, payload, expect)
    }

    fn init(&self) {
        assert_eq!(
            self.ctrl_cmd(cmd::INIT, &1u32.to_be_bytes(), 4),
            be(res::SUCCESS)
        );
    }

    fn join(mut self) -> Result<(), vtpm::Error> {
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("server thread panicked")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn be(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn ctrl_on(s: &mut impl ReadWrite, code: u32, payload: &[u8], expect: usize) -> Vec<u8> {
    let mut req = code.to_be_bytes().to_vec();
    req.extend_from_slice(payload);
    s.write_all(&req).expect("write ctrl");
    let mut resp = vec![0u8; expect];
    s.read_exact(&mut resp).expect("read ctrl response");
    resp
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Send one raw TPM command and read one complete response (by its header size).
fn transact(s: &mut impl ReadWrite, command: &[u8]) -> Vec<u8> {
    s.write_all(command).expect("write command");
    read_response(s)
}

fn read_response(s: &mut impl Read) -> Vec<u8> {
    let mut hdr = [0u8; 10];
    s.read_exact(&mut hdr).expect("read response header");
    let size = u32::from_be_bytes([hdr[2], hdr[3], hdr[4], hdr[5]]) as usize;
    assert!((10..=4096).contains(&size), "response size {size}");
    let mut resp = hdr.to_vec();
    resp.resize(size, 0);
    s.read_exact(&mut resp[10..]).expect("read response body");
    resp
}

fn rc(resp: &[u8]) -> u32 {
    u32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]])
}

fn error_response(code: u32) -> Vec<u8> {
    let mut r = vec![0x80, 0x01, 0, 0, 0, 10];
    r.extend_from_slice(&code.to_be_bytes());
    r
}

fn assert_eof(s: &mut impl Read) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("expected EOF, got data"),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "expected EOF: {e}"
        ),
    }
}

#[test]
fn capabilities() {
    let srv = Server::start(|_| {});
    let caps = srv.ctrl_cmd(cmd::GET_CAPABILITY, &[], 8);
    assert_eq!(caps, CAPABILITIES.to_be_bytes());
    // INIT, SHUTDOWN, GET_TPMESTABLISHED, SET_LOCALITY, RESET_TPMESTABLISHED, SET_DATAFD,
    // STOP and SET_BUFFERSIZE are what QEMU requires of a TPM 2.0 backend.
    let qemu_needs = 1 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 7 | 1 << 10 | 1 << 12 | 1 << 13;
    assert_eq!(CAPABILITIES & qemu_needs, qemu_needs);
}

#[test]
fn data_before_init_fails_then_init_starts_the_tpm() {
    let srv = Server::start(|_| {});
    let mut d = srv.data();
    assert_eq!(
        transact(&mut d, &STARTUP_CLEAR),
        error_response(TPM_RC_FAILURE)
    );
    // The connection survives a failure response.
    assert_eq!(
        transact(&mut d, &STARTUP_CLEAR),
        error_response(TPM_RC_FAILURE)
    );
    srv.init();
    assert_eq!(rc(&transact(&mut d, &STARTUP_CLEAR)), 0);
    let r = transact(&mut d, &GET_RANDOM_8);
    assert_eq!(rc(&r), 0);
    assert_eq!(r.len(), 20);
}

#[test]
fn init_payload_must_be_exactly_four_bytes() {
    let srv = Server::start(|_| {});
    assert_eq!(
        srv.ctrl_cmd(cmd::INIT, &[0, 0, 0, 0, 0], 4),
        be(res::BAD_PARAMETER)
    );
    // Too short: answered once swtpm's 500 ms request deadline passes.
    let t = Instant::now();
    assert_eq!(srv.ctrl_cmd(cmd::INIT, &[0, 0], 4), be(res::BAD_PARAMETER));
    assert!(t.elapsed() >= Duration::from_millis(400));
}

#[test]
fn established_and_locality() {
    let srv = Server::start(|_| {});
    // Not running: GET_TPMESTABLISHED is refused like an unknown ordinal.
    assert_eq!(
        srv.ctrl_cmd(cmd::GET_TPMESTABLISHED, &[], 4),
        be(res::BAD_ORDINAL)
    );
    // SET_LOCALITY works whether or not the TPM runs.
    assert_eq!(srv.ctrl_cmd(cmd::SET_LOCALITY, &[3], 4), be(res::SUCCESS));
    assert_eq!(
        srv.ctrl_cmd(cmd::SET_LOCALITY, &[5], 4),
        be(res::BAD_LOCALITY)
    );
    assert_eq!(srv.ctrl_cmd(cmd::SET_LOCALITY, &[4], 4), be(res::SUCCESS));
    srv.init();
    // ptm_est's response: result, bit, three bytes of padding.
    assert_eq!(
        srv.ctrl_cmd(cmd::GET_TPMESTABLISHED, &[], 8),
        vec![0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        srv.ctrl_cmd(cmd::RESET_TPMESTABLISHED, &[0], 4),
        be(res::BAD_LOCALITY)
    );
    assert_eq!(
        srv.ctrl_cmd(cmd::RESET_TPMESTABLISHED, &[5], 4),
        be(res::BAD_LOCALITY)
    );
    assert_eq!(
        srv.ctrl_cmd(cmd::RESET_TPMESTABLISHED, &[3], 4),
        be(res::SUCCESS)
    );
    // A write-only command with a payload is a bad parameter.
    assert_eq!(
        srv.ctrl_cmd(cmd::GET_TPMESTABLISHED, &[0], 4),
        be(res::BAD_PARAMETER)
    );
}

#[test]
fn reject_locality_4() {
    let srv = Server::start(|c| c.reject_locality_4 = true);
    assert_eq!(
        srv.ctrl_cmd(cmd::SET_LOCALITY, &[4], 4),
        be(res::BAD_LOCALITY)
    );
    assert_eq!(srv.ctrl_cmd(cmd::SET_LOCALITY, &[3], 4), be(res::SUCCESS));
}

#[test]
fn ctrl_connection_carries_many_requests() {
    let srv = Server::start(|_| {});
    let mut c = srv.ctrl();
    assert_eq!(
        ctrl_on(&mut c, cmd::INIT, &[0, 0, 0, 0], 4),
        be(res::SUCCESS)
    );
    assert_eq!(ctrl_on(&mut c, cmd::GET_CONFIG, &[], 8), vec![0; 8]);
    assert_eq!(
        ctrl_on(&mut c, cmd::CANCEL_TPM_CMD, &[], 4),
        be(res::SUCCESS)
    );
    assert_eq!(
        ctrl_on(&mut c, cmd::STORE_VOLATILE, &[], 4),
        be(res::SUCCESS)
    );
    assert_eq!(ctrl_on(&mut c, 0x13, &[], 4), be(res::BAD_ORDINAL));
    assert_eq!(ctrl_on(&mut c, 0xffff_ffff, &[], 4), be(res::BAD_ORDINAL));
    // GET_STATEBLOB of an unknown blob type: a ptm_getstate header with no blob.
    assert_eq!(
        ctrl_on(&mut c, cmd::GET_STATEBLOB, &[0; 12], 16),
        [be(res::BAD_PARAMETER), vec![0; 12]].concat()
    );
    // Buffer size: a query works while running, a change does not.
    // The answer is (size in force, smallest, largest), as swtpm gives it.
    let r = ctrl_on(&mut c, cmd::SET_BUFFERSIZE, &[0, 0, 0, 0], 16);
    assert_eq!(r, [be(0), be(4096), be(2048), be(4096)].concat());
    assert_eq!(
        ctrl_on(&mut c, cmd::SET_BUFFERSIZE, &4096u32.to_be_bytes(), 4),
        be(res::BAD_ORDINAL)
    );
    // STOP: the TPM is off (data gets TPM_RC_FAILURE), the server keeps serving.
    assert_eq!(ctrl_on(&mut c, cmd::STOP, &[], 4), be(res::SUCCESS));
    assert_eq!(
        ctrl_on(&mut c, cmd::GET_TPMESTABLISHED, &[], 4),
        be(res::BAD_ORDINAL)
    );
    assert_eq!(
        transact(&mut srv.data(), &STARTUP_CLEAR),
        error_response(TPM_RC_FAILURE)
    );
    // While stopped a size is adopted (QEMU's tpm-crb asks for 3968), within 2048..=4096.
    let r = ctrl_on(&mut c, cmd::SET_BUFFERSIZE, &3968u32.to_be_bytes(), 16);
    assert_eq!(r, [be(0), be(3968), be(2048), be(4096)].concat());
    let r = ctrl_on(&mut c, cmd::SET_BUFFERSIZE, &100u32.to_be_bytes(), 16);
    assert_eq!(r, [be(0), be(2048), be(2048), be(4096)].concat());
    let r = ctrl_on(&mut c, cmd::SET_BUFFERSIZE, &4096u32.to_be_bytes(), 16);
    assert_eq!(r, [be(0), be(4096), be(2048), be(4096)].concat());
    assert_eq!(
        ctrl_on(&mut c, cmd::INIT, &[0, 0, 0, 0], 4),
        be(res::SUCCESS)
    );
    assert_eq!(rc(&transact(&mut srv.data(), &STARTUP_CLEAR)), 0);
}

#[test]
fn get_info_chunks_a_nul_terminated_string() {
    let srv = Server::start(|_| {});
    let req = |flags: u64, offset: u32| {
        let mut p = flags.to_be_bytes().to_vec();
        p.extend_from_slice(&offset.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p
    };
    let mut c = srv.ctrl();
    c.write_all(&[cmd::GET_INFO.to_be_bytes().to_vec(), req(3, 0)].concat())
        .expect("write");
    let mut head = [0u8; 12];
    c.read_exact(&mut head).expect("read");
    assert_eq!(head[..4], be(0)[..]);
    let total = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    assert_eq!(total, len);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).expect("read");
    assert_eq!(body.last(), Some(&0));
    let text = std::str::from_utf8(&body[..len - 1]).expect("utf8");
    assert!(
        text.starts_with(r#"{"TPMSpecification":{"family":"2.0""#),
        "{text}"
    );
    assert!(text.contains(r#""TPMAttributes":{"#), "{text}");
    // From an offset: the tail; past the end: bad parameter.
    let r = ctrl_on(&mut c, cmd::GET_INFO, &req(3, 5), 12 + len - 5);
    assert_eq!(&r[12..], &body[5..]);
    assert_eq!(
        ctrl_on(&mut c, cmd::GET_INFO, &req(3, len as u32), 4),
        be(res::BAD_PARAMETER)
    );
    assert_eq!(
        ctrl_on(&mut c, cmd::GET_INFO, &[0; 8], 4),
        be(res::BAD_PARAMETER)
    );
}

#[test]
fn unsupported_variable_length_ctrl_commands_close_the_connection() {
    let srv = Server::start(|_| {});
    let mut c = srv.ctrl();
    let mut req = cmd::HASH_DATA.to_be_bytes().to_vec();
    req.extend_from_slice(&100u32.to_be_bytes());
    req.extend_from_slice(&[0xaa; 100]);
    assert_eq!(
        ctrl_on(&mut c, cmd::HASH_DATA, &req[4..], 4),
        be(res::BAD_ORDINAL)
    );
    assert_eof(&mut c);
}

#[test]
fn bad_command_sizes_get_an_error_and_a_close() {
    let srv = Server::start(|_| {});
    srv.init();
    for size in [0u32, 5, 9, 4097, 0xffff_ffff] {
        let mut d = srv.data();
        let mut hdr = vec![0x80, 0x01];
        hdr.extend_from_slice(&size.to_be_bytes());
        hdr.extend_from_slice(&[0, 0, 1, 0x44]);
        assert_eq!(
            transact(&mut d, &hdr),
            error_response(TPM_RC_COMMAND_SIZE),
            "size {size}"
        );
        assert_eof(&mut d);
    }
    // The server is unharmed.
    assert_eq!(rc(&transact(&mut srv.data(), &STARTUP_CLEAR)), 0);
}

#[test]
fn truncated_command_does_not_block_other_connections() {
    let srv = Server::start(|c| c.request_timeout = Duration::from_millis(700));
    srv.init();
    // Connection A sends 11 of 12 bytes and stalls.
    let mut a = srv.data();
    a.write_all(&STARTUP_CLEAR[..11]).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    // Connection B is served at once.
    let t = Instant::now();
    assert_eq!(rc(&transact(&mut srv.data(), &STARTUP_CLEAR)), 0);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "B waited {:?}",
        t.elapsed()
    );
    // A is closed without a response once its request deadline passes.
    assert_eof(&mut a);
    // A stalled header (fewer than 10 bytes) is treated the same way.
    let mut a = srv.data();
    a.write_all(&STARTUP_CLEAR[..4]).expect("write");
    assert_eq!(rc(&transact(&mut srv.data(), &GET_RANDOM_8)), 0);
    assert_eof(&mut a);
}

#[test]
fn idle_data_connection_is_not_timed_out() {
    let srv = Server::start(|c| c.request_timeout = Duration::from_millis(200));
    srv.init();
    let mut d = srv.data();
    assert_eq!(rc(&transact(&mut d, &STARTUP_CLEAR)), 0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(rc(&transact(&mut d, &GET_RANDOM_8)), 0);
}

#[test]
fn per_command_connections_like_tpm2_tss() {
    let srv = Server::start(|_| {});
    // tpm2-tss's swtpm TCTI probes the data port with an empty connection, sets the
    // locality through the control port, then opens one data connection per command.
    drop(srv.data());
    assert_eq!(srv.ctrl_cmd(cmd::SET_LOCALITY, &[0], 4), be(res::SUCCESS));
    srv.init();
    for command in [&STARTUP_CLEAR, &GET_RANDOM_8, &GET_RANDOM_8] {
        let mut d = srv.data();
        let r = transact(&mut d, command);
        assert_eq!(rc(&r), 0);
        d.shutdown(Shutdown::Both).expect("shutdown");
    }
}

#[test]
fn disconnect_flag_closes_after_each_response() {
    let srv = Server::start(|c| c.disconnect = true);
    srv.init();
    let mut d = srv.data();
    assert_eq!(rc(&transact(&mut d, &STARTUP_CLEAR)), 0);
    assert_eof(&mut d);
}

#[test]
fn tcg_send_command_prefix() {
    let srv = Server::start(|_| {});
    srv.init();
    let mut d = srv.data();
    let mut framed = 8u32.to_be_bytes().to_vec();
    framed.push(0); // locality
    framed.extend_from_slice(&(STARTUP_CLEAR.len() as u32).to_be_bytes());
    framed.extend_from_slice(&STARTUP_CLEAR);
    d.write_all(&framed).expect("write");
    let mut r = [0u8; 18];
    d.read_exact(&mut r).expect("read");
    assert_eq!(r[..4], 10u32.to_be_bytes());
    assert_eq!(rc(&r[4..14]), 0);
    assert_eq!(r[14..], [0, 0, 0, 0]);
    // A bad size inside the prefix: a framed error, then a close.
    let mut bad = 8u32.to_be_bytes().to_vec();
    bad.push(0);
    bad.extend_from_slice(&5000u32.to_be_bytes());
    bad.push(0x80);
    d.write_all(&bad).expect("write");
    let mut r = [0u8; 18];
    d.read_exact(&mut r).expect("read");
    assert_eq!(rc(&r[4..14]), TPM_RC_COMMAND_SIZE);
    assert_eof(&mut d);
}

#[test]
fn shutdown_saves_and_ends_the_server() {
    let srv = Server::start(|_| {});
    srv.init();
    let mut d = srv.data();
    assert_eq!(rc(&transact(&mut d, &STARTUP_CLEAR)), 0);
    assert_eq!(srv.ctrl_cmd(cmd::SHUTDOWN, &[], 4), be(res::SUCCESS));
    // The open data connection is closed by the server on its way out.
    assert_eof(&mut d);
    let state = srv.dir.path().join(vtpm::state::STATE_FILE);
    assert!(vtpm::state::decode(&std::fs::read(&state).expect("read")).is_ok());
    srv.join().expect("serve returned an error");
}

#[test]
fn external_stop_closes_connections() {
    let srv = Server::start(|_| {});
    let mut c = srv.ctrl();
    let mut d = srv.data();
    assert_eq!(ctrl_on(&mut c, cmd::GET_CONFIG, &[], 8), vec![0; 8]);
    srv.stop.stop();
    assert_eof(&mut c);
    assert_eof(&mut d);
    srv.join().expect("serve");
}

#[test]
fn unix_sockets_and_datafd_passing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctrl_path = dir.path().join("ctrl.sock");
    let data_path = dir.path().join("data.sock");
    let state = tempfile::tempdir().expect("tempdir");
    let instance = Arc::new(
        Instance::open(StateDir::open(state.path()).expect("statedir"), Log::none())
            .expect("instance"),
    );
    let ep = |p: &Path| vtpm::Endpoint::Unix {
        path: p.to_path_buf(),
        mode: Some(0o700),
        uid: None,
        gid: None,
    };
    let config = SocketConfig::new(
        Some(Listener::bind(&ep(&data_path)).expect("bind data")),
        Some(Listener::bind(&ep(&ctrl_path)).expect("bind ctrl")),
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&ctrl_path)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    let stop = StopHandle::new().expect("stop");
    let s2 = stop.clone();
    let thread = std::thread::spawn(move || serve(instance, config, s2));

    let mut c = UnixStream::connect(&ctrl_path).expect("connect ctrl");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(
        ctrl_on(&mut c, cmd::INIT, &[0, 0, 0, 0], 4),
        be(res::SUCCESS)
    );
    // SET_DATAFD without a descriptor.
    assert_eq!(
        ctrl_on(&mut c, cmd::SET_DATAFD, &[], 4),
        be(res::BAD_PARAMETER)
    );

    // As QEMU: a socketpair, one end passed with SCM_RIGHTS alongside CMD_SET_DATAFD.
    let (mut ours, theirs) = UnixStream::pair().expect("pair");
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let fds = [theirs.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
    assert!(anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
    let code = cmd::SET_DATAFD.to_be_bytes();
    rustix::net::sendmsg(
        &c,
        &[IoSlice::new(&code)],
        &mut anc,
        rustix::net::SendFlags::empty(),
    )
    .expect("sendmsg");
    let mut r = [0u8; 4];
    c.read_exact(&mut r).expect("read");
    assert_eq!(r.to_vec(), be(res::SUCCESS));
    drop(theirs);
    assert_eq!(rc(&transact(&mut ours, &STARTUP_CLEAR)), 0);
    assert_eq!(rc(&transact(&mut ours, &GET_RANDOM_8)), 0);

    // The path-based data socket works alongside.
    let mut d = UnixStream::connect(&data_path).expect("connect data");
    d.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(rc(&transact(&mut d, &GET_RANDOM_8)), 0);

    stop.stop();
    thread.join().expect("thread").expect("serve");
    assert!(
        !ctrl_path.exists() && !data_path.exists(),
        "socket files are removed"
    );
}

#[test]
fn stale_unix_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s");
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let ep = vtpm::Endpoint::Unix {
        path: path.clone(),
        mode: None,
        uid: None,
        gid: None,
    };
    drop(Listener::bind(&ep).expect("rebind over a stale socket"));
    std::fs::write(&path, b"not a socket").expect("write");
    assert!(Listener::bind(&ep).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), b"not a socket");
}
