//! The Microsoft simulator protocol over real sockets, with hand-built frames.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vtpm::mssim::{serve, sig, MssimConfig};
use vtpm::{Instance, Listener, Log, StateDir, StopHandle};

const STARTUP_CLEAR: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0];
const GET_RANDOM_8: [u8; 12] = [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8];

struct Server {
    command: SocketAddr,
    platform: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<Result<(), vtpm::Error>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(timeout: Duration) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = TcpListener::bind("127.0.0.1:0").expect("bind");
        let platform = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (c, p) = (
            command.local_addr().expect("addr"),
            platform.local_addr().expect("addr"),
        );
        let instance = Arc::new(
            Instance::open(StateDir::open(dir.path()).expect("statedir"), Log::none())
                .expect("instance"),
        );
        let mut config =
            MssimConfig::new(Listener::from_tcp(command), Listener::from_tcp(platform));
        config.request_timeout = timeout;
        let stop = StopHandle::new().expect("stop");
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || serve(instance, config, s2));
        Server {
            command: c,
            platform: p,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }
    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }
    fn cmd(&self) -> TcpStream {
        Server::connect(self.command)
    }
    fn plat(&self) -> TcpStream {
        Server::connect(self.platform)
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

fn read_u32(s: &mut TcpStream) -> u32 {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).expect("read u32");
    u32::from_be_bytes(b)
}

fn signal(s: &mut TcpStream, code: u32) -> u32 {
    s.write_all(&code.to_be_bytes()).expect("write signal");
    read_u32(s)
}

/// TPM_SEND_COMMAND: returns the response (empty if the TPM is off).
fn send(s: &mut TcpStream, locality: u8, command: &[u8]) -> Vec<u8> {
    let mut f = sig::SEND_COMMAND.to_be_bytes().to_vec();
    f.push(locality);
    f.extend_from_slice(&(command.len() as u32).to_be_bytes());
    f.extend_from_slice(command);
    s.write_all(&f).expect("write");
    let size = read_u32(s) as usize;
    let mut r = vec![0u8; size];
    s.read_exact(&mut r).expect("read response");
    assert_eq!(read_u32(s), 0, "trailer");
    r
}

fn rc(resp: &[u8]) -> u32 {
    u32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]])
}

fn assert_eof(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("expected EOF, got data"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn powered_off_answers_empty_then_power_on_like_tpm2_tss() {
    let srv = Server::start(Duration::from_secs(10));
    let mut c = srv.cmd();
    assert_eq!(send(&mut c, 0, &STARTUP_CLEAR), Vec::<u8>::new());
    // tpm2-tss's mssim TCTI sends POWER_ON and NV_ON at every initialisation.
    let mut p = srv.plat();
    assert_eq!(signal(&mut p, sig::POWER_ON), 0);
    assert_eq!(signal(&mut p, sig::NV_ON), 0);
    assert_eq!(rc(&send(&mut c, 0, &STARTUP_CLEAR)), 0);
    // A second POWER_ON (next tool invocation) must not reset the running TPM:
    // Startup again is TPM_RC_INITIALIZE, not success.
    assert_eq!(signal(&mut p, sig::POWER_ON), 0);
    assert_eq!(rc(&send(&mut c, 0, &STARTUP_CLEAR)), 0x100);
    let r = send(&mut c, 0, &GET_RANDOM_8);
    assert_eq!((rc(&r), r.len()), (0, 20));
    // RESET runs _TPM_Init: Startup is accepted again.
    assert_eq!(signal(&mut p, sig::RESET), 0);
    assert_eq!(rc(&send(&mut c, 0, &STARTUP_CLEAR)), 0);
    // POWER_OFF: commands get nothing.
    assert_eq!(signal(&mut p, sig::POWER_OFF), 0);
    assert_eq!(send(&mut c, 0, &GET_RANDOM_8), Vec::<u8>::new());
}

#[test]
fn ignored_hardware_signals_are_acknowledged() {
    let srv = Server::start(Duration::from_secs(10));
    let mut p = srv.plat();
    for s in [
        sig::PHYS_PRES_ON,
        sig::PHYS_PRES_OFF,
        sig::CANCEL_ON,
        sig::CANCEL_OFF,
        sig::NV_OFF,
        sig::NV_ON,
        sig::KEY_CACHE_ON,
        sig::KEY_CACHE_OFF,
        sig::RESTART,
    ] {
        assert_eq!(signal(&mut p, s), 0, "signal {s}");
    }
    // Unknown: 1, then a close.
    assert_eq!(signal(&mut p, 99), 1);
    assert_eof(&mut p);
    // SESSION_END closes without an answer.
    let mut p = srv.plat();
    p.write_all(&sig::SESSION_END.to_be_bytes()).expect("write");
    assert_eof(&mut p);
}

#[test]
fn command_response_sizes_statistics() {
    let srv = Server::start(Duration::from_secs(10));
    let mut p = srv.plat();
    assert_eq!(signal(&mut p, sig::POWER_ON), 0);
    let mut c = srv.cmd();
    assert_eq!(rc(&send(&mut c, 0, &STARTUP_CLEAR)), 0);
    assert_eq!(rc(&send(&mut c, 0, &GET_RANDOM_8)), 0);
    p.write_all(&sig::GET_COMMAND_RESPONSE_SIZES.to_be_bytes())
        .expect("write");
    assert_eq!(read_u32(&mut p), 16);
    let mut stats = [0u8; 16];
    p.read_exact(&mut stats).expect("read");
    assert_eq!(read_u32(&mut p), 0);
    assert_eq!(
        u32::from_ne_bytes([stats[0], stats[1], stats[2], stats[3]]),
        12
    );
    assert_eq!(
        u32::from_ne_bytes([stats[8], stats[9], stats[10], stats[11]]),
        20
    );
    assert_eq!(
        stats[12..16],
        [0, 0, 0, 0],
        "largest response's code (GetRandom: success)"
    );
}

#[test]
fn handshake_and_alternative_result() {
    let srv = Server::start(Duration::from_secs(10));
    let mut c = srv.cmd();
    c.write_all(&[sig::REMOTE_HANDSHAKE.to_be_bytes(), 1u32.to_be_bytes()].concat())
        .expect("write");
    assert_eq!(
        (read_u32(&mut c), read_u32(&mut c), read_u32(&mut c)),
        (1, 0x0d, 0)
    );
    c.write_all(
        &[
            sig::SET_ALTERNATIVE_RESULT.to_be_bytes(),
            7u32.to_be_bytes(),
        ]
        .concat(),
    )
    .expect("write");
    assert_eq!(read_u32(&mut c), 0);
    c.write_all(&sig::SESSION_END.to_be_bytes()).expect("write");
    assert_eof(&mut c);
    // Client version 0 is refused with a close.
    let mut c = srv.cmd();
    c.write_all(&[sig::REMOTE_HANDSHAKE.to_be_bytes(), 0u32.to_be_bytes()].concat())
        .expect("write");
    assert_eof(&mut c);
}

#[test]
fn bad_sizes() {
    let srv = Server::start(Duration::from_secs(10));
    assert_eq!(signal(&mut srv.plat(), sig::POWER_ON), 0);
    let mut c = srv.cmd();
    // Shorter than a header: a framed TPM_RC_COMMAND_SIZE, the connection stays usable.
    let r = send(&mut c, 0, &[0x80, 0x01, 0, 0, 0]);
    assert_eq!(r, [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x42]);
    assert_eq!(rc(&send(&mut c, 0, &STARTUP_CLEAR)), 0);
    // Larger than the engine accepts: the error, then a close (the body is not read).
    let mut f = sig::SEND_COMMAND.to_be_bytes().to_vec();
    f.push(0);
    f.extend_from_slice(&100_000u32.to_be_bytes());
    c.write_all(&f).expect("write");
    assert_eq!(read_u32(&mut c), 10);
    let mut r = [0u8; 10];
    c.read_exact(&mut r).expect("read");
    assert_eq!(rc(&r), 0x142);
    assert_eq!(read_u32(&mut c), 0);
    assert_eof(&mut c);
    // Unknown command-port request: a close.
    let mut c = srv.cmd();
    c.write_all(&77u32.to_be_bytes()).expect("write");
    assert_eof(&mut c);
}

#[test]
fn stalled_client_does_not_block_others() {
    let srv = Server::start(Duration::from_millis(600));
    assert_eq!(signal(&mut srv.plat(), sig::POWER_ON), 0);
    let mut a = srv.cmd();
    let mut f = sig::SEND_COMMAND.to_be_bytes().to_vec();
    f.push(0);
    f.extend_from_slice(&12u32.to_be_bytes());
    f.extend_from_slice(&STARTUP_CLEAR[..6]);
    a.write_all(&f).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(rc(&send(&mut srv.cmd(), 0, &STARTUP_CLEAR)), 0);
    assert!(t.elapsed() < Duration::from_millis(400));
    assert_eof(&mut a);
}

#[test]
fn stop_ends_the_server() {
    let srv = Server::start(Duration::from_secs(10));
    let mut c = srv.cmd();
    let mut p = srv.plat();
    assert_eq!(signal(&mut p, sig::POWER_ON), 0);
    p.write_all(&sig::STOP.to_be_bytes()).expect("write");
    assert_eof(&mut p);
    assert_eof(&mut c);
    srv.join().expect("serve");
}
