//! State blobs over the swtpm control channel, with hand-built frames as QEMU sends them:
//! CMD_GET_STATEBLOB (`ptm_getstate`) and CMD_SET_STATEBLOB (`ptm_setstate`, header and
//! blob in separate writes), permanent and volatile blobs carried into a second server,
//! and every refusal.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use vtpm::swtpm::{cap, cmd, res, serve, SocketConfig, CAPABILITIES, STATE_FLAG_ENCRYPTED};
use vtpm::{Instance, Listener, Log, StateDir, StopHandle};

const PERMANENT: u32 = 1;
const VOLATILE: u32 = 2;
const SAVESTATE: u32 = 3;
const RS_PW: u32 = 0x4000_0009;
const OWNER: u32 = 0x4000_0001;
const TPM_RC_INITIALIZE: u32 = 0x100;
const TPM_RC_FAILURE: u32 = 0x101;

struct Server {
    data: std::net::SocketAddr,
    ctrl: std::net::SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<Result<(), vtpm::Error>>>,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = TcpListener::bind("127.0.0.1:0").expect("bind");
        let ctrl = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (d, c) = (
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
        // A blob cut short is answered once this has passed.
        config.request_timeout = Duration::from_secs(2);
        let stop = StopHandle::new().expect("stop");
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || serve(instance, config, s2));
        Server {
            data: d,
            ctrl: c,
            stop,
            thread: Some(thread),
            dir,
        }
    }

    fn ctrl(&self) -> TcpStream {
        let s = TcpStream::connect(self.ctrl).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }

    fn ctrl_cmd(&self, code: u32, payload: &[u8], expect: usize) -> Vec<u8> {
        let mut s = self.ctrl();
        let mut req = code.to_be_bytes().to_vec();
        req.extend_from_slice(payload);
        s.write_all(&req).expect("write");
        let mut resp = vec![0u8; expect];
        s.read_exact(&mut resp).expect("read");
        resp
    }

    fn init(&self) -> u32 {
        be32(&self.ctrl_cmd(cmd::INIT, &1u32.to_be_bytes(), 4))
    }

    fn stop_tpm(&self) {
        assert_eq!(be32(&self.ctrl_cmd(cmd::STOP, &[], 4)), res::SUCCESS);
    }

    /// One TPM command on a fresh data connection.
    fn tpm(&self, command: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.data).expect("connect data");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(command).expect("write");
        let mut hdr = [0u8; 10];
        s.read_exact(&mut hdr).expect("read");
        let size = be32(&hdr[2..6]) as usize;
        let mut r = hdr.to_vec();
        r.resize(size, 0);
        s.read_exact(&mut r[10..]).expect("read");
        r
    }

    /// CMD_GET_STATEBLOB from `offset`: (result, flags, totlength, blob).
    fn get_blob(&self, ty: u32, offset: u32) -> (u32, u32, u32, Vec<u8>) {
        let mut s = self.ctrl();
        let mut req = cmd::GET_STATEBLOB.to_be_bytes().to_vec();
        for v in [1u32 /* DECRYPTED */, ty, offset] {
            req.extend_from_slice(&v.to_be_bytes());
        }
        s.write_all(&req).expect("write");
        let mut hdr = [0u8; 16];
        s.read_exact(&mut hdr).expect("read header");
        let (total, len) = (be32(&hdr[8..12]), be32(&hdr[12..16]));
        assert_eq!(total, len, "totlength = length, as QEMU requires");
        let mut blob = vec![0u8; len as usize];
        s.read_exact(&mut blob).expect("read blob");
        (be32(&hdr[0..4]), be32(&hdr[4..8]), total, blob)
    }

    /// CMD_SET_STATEBLOB as QEMU sends it: the header, then the blob in a second write.
    fn set_blob(&self, ty: u32, flags: u32, blob: &[u8]) -> u32 {
        let mut s = self.ctrl();
        let mut hdr = cmd::SET_STATEBLOB.to_be_bytes().to_vec();
        for v in [flags, ty, blob.len() as u32] {
            hdr.extend_from_slice(&v.to_be_bytes());
        }
        s.write_all(&hdr).expect("write header");
        std::thread::sleep(Duration::from_millis(20));
        s.write_all(blob).expect("write blob");
        let mut r = [0u8; 4];
        s.read_exact(&mut r).expect("read result");
        be32(&r)
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

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn rc(resp: &[u8]) -> u32 {
    be32(&resp[6..10])
}

fn command(code: u32, handles: &[u32], session: bool, params: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for h in handles {
        body.extend_from_slice(&h.to_be_bytes());
    }
    if session {
        body.extend_from_slice(&9u32.to_be_bytes());
        body.extend_from_slice(&RS_PW.to_be_bytes());
        body.extend_from_slice(&[0, 0, 1, 0, 0]);
    }
    body.extend_from_slice(params);
    let tag: u16 = if session { 0x8002 } else { 0x8001 };
    let mut out = tag.to_be_bytes().to_vec();
    out.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn startup() -> Vec<u8> {
    command(0x144, &[], false, &[0, 0])
}

/// TPM2_PCR_Extend(pcr, sha256 = digest).
fn pcr_extend(pcr: u32, digest: [u8; 32]) -> Vec<u8> {
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&0x000bu16.to_be_bytes());
    p.extend_from_slice(&digest);
    command(0x182, &[pcr], true, &p)
}

/// TPM2_PCR_Read of one sha256 PCR (< 24): its value.
fn pcr_read(srv: &Server, pcr: u32) -> Result<Vec<u8>, u32> {
    let mut select = [0u8; 3];
    select[(pcr / 8) as usize] = 1 << (pcr % 8);
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&0x000bu16.to_be_bytes());
    p.push(3);
    p.extend_from_slice(&select);
    let r = srv.tpm(&command(0x17E, &[], false, &p));
    if rc(&r) != 0 {
        return Err(rc(&r));
    }
    Ok(r[r.len() - 32..].to_vec())
}

/// TPM2_NV_DefineSpace(owner, index, 8 bytes, ownerread|ownerwrite), then NV_Write.
fn nv_define_and_write(srv: &Server, index: u32, data: &[u8; 8]) {
    let mut p = 0u16.to_be_bytes().to_vec(); // empty auth
    let mut public = index.to_be_bytes().to_vec();
    public.extend_from_slice(&0x000bu16.to_be_bytes());
    public.extend_from_slice(&0x0002_0002u32.to_be_bytes()); // OWNERWRITE | OWNERREAD
    public.extend_from_slice(&0u16.to_be_bytes());
    public.extend_from_slice(&8u16.to_be_bytes());
    p.extend_from_slice(&(public.len() as u16).to_be_bytes());
    p.extend_from_slice(&public);
    assert_eq!(rc(&srv.tpm(&command(0x12A, &[OWNER], true, &p))), 0);
    let mut w = 8u16.to_be_bytes().to_vec();
    w.extend_from_slice(data);
    w.extend_from_slice(&0u16.to_be_bytes());
    assert_eq!(rc(&srv.tpm(&command(0x137, &[OWNER, index], true, &w))), 0);
}

fn nv_read(srv: &Server, index: u32) -> Result<Vec<u8>, u32> {
    let mut p = 8u16.to_be_bytes().to_vec();
    p.extend_from_slice(&0u16.to_be_bytes());
    let r = srv.tpm(&command(0x14E, &[OWNER, index], true, &p));
    if rc(&r) != 0 {
        return Err(rc(&r));
    }
    Ok(r[r.len() - 5 - 8..r.len() - 5].to_vec())
}

#[test]
fn capabilities_advertise_state_blobs() {
    let srv = Server::start();
    let caps = srv.ctrl_cmd(cmd::GET_CAPABILITY, &[], 8);
    assert_eq!(caps, CAPABILITIES.to_be_bytes());
    let both = cap::GET_STATEBLOB | cap::SET_STATEBLOB;
    assert_eq!(CAPABILITIES & both, both);
}

#[test]
fn permanent_blob_is_a_state_file_and_carries_nv() {
    let a = Server::start();
    assert_eq!(a.init(), res::SUCCESS);
    assert_eq!(rc(&a.tpm(&startup())), 0);
    nv_define_and_write(&a, 0x0150_0001, b"migrated");

    let (code, flags, total, blob) = a.get_blob(PERMANENT, 0);
    assert_eq!((code, flags), (res::SUCCESS, 0), "never encrypted");
    assert_eq!(total as usize, blob.len());
    assert_eq!(&blob[..8], b"TLVTPMST");
    vtpm::state::decode(&blob).expect("a valid state file");
    // From an offset: the tail, whole.
    let (code, _, total, tail) = a.get_blob(PERMANENT, 100);
    assert_eq!(code, res::SUCCESS);
    assert_eq!(total as usize, blob.len() - 100);
    assert_eq!(tail[..50], blob[100..150]);
    let (code, _, total, _) = a.get_blob(PERMANENT, u32::MAX);
    assert_eq!((code, total), (res::SUCCESS, 0));

    let b = Server::start();
    // Running TPMs refuse blobs; stopped TPMs give none.
    assert_eq!(b.init(), res::SUCCESS);
    assert_eq!(b.set_blob(PERMANENT, 0, &blob), res::BAD_ORDINAL);
    assert_eq!(rc(&b.tpm(&startup())), 0);
    assert!(nv_read(&b, 0x0150_0001).is_err());
    b.stop_tpm();
    assert_eq!(
        be32(&b.ctrl_cmd(cmd::GET_STATEBLOB, &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], 4)),
        res::BAD_ORDINAL
    );
    assert_eq!(b.set_blob(PERMANENT, 0, &blob), res::SUCCESS);
    // Saved at once: the state file holds exactly the blob's state.
    let on_disk = std::fs::read(b.dir.path().join(vtpm::state::STATE_FILE)).expect("state");
    assert_eq!(
        vtpm::state::decode(&on_disk).expect("decode"),
        vtpm::state::decode(&blob).expect("decode")
    );
    assert_eq!(b.init(), res::SUCCESS);
    assert_eq!(rc(&b.tpm(&startup())), 0);
    assert_eq!(nv_read(&b, 0x0150_0001).expect("nv"), b"migrated");
}

#[test]
fn bad_permanent_blobs_are_refused_and_change_nothing() {
    let srv = Server::start();
    assert_eq!(srv.init(), res::SUCCESS);
    assert_eq!(rc(&srv.tpm(&startup())), 0);
    nv_define_and_write(&srv, 0x0150_0002, b"original");
    let (_, _, _, blob) = srv.get_blob(PERMANENT, 0);
    srv.stop_tpm();

    let mut corrupt = blob.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(srv.set_blob(PERMANENT, 0, &corrupt), res::BAD_PARAMETER);
    assert_eq!(
        srv.set_blob(PERMANENT, 0, b"not a state"),
        res::BAD_PARAMETER
    );
    assert_eq!(srv.set_blob(PERMANENT, 0, &[]), res::BAD_PARAMETER);
    // A volatile blob is not a permanent one (and vice versa).
    assert_eq!(
        srv.set_blob(PERMANENT, 0, &vtpm::state::encode_volatile(b"x")),
        res::BAD_PARAMETER
    );
    assert_eq!(srv.set_blob(VOLATILE, 0, &blob), res::BAD_PARAMETER);
    // A valid envelope around a payload the engine rejects.
    assert_eq!(
        srv.set_blob(PERMANENT, 0, &vtpm::state::encode(b"garbage")),
        res::FAIL
    );
    // Flagged encrypted: no migration key here.
    assert_eq!(
        srv.set_blob(PERMANENT, STATE_FLAG_ENCRYPTED, &blob),
        res::KEYNOTFOUND
    );
    assert_eq!(srv.set_blob(7, 0, &blob), res::BAD_PARAMETER);
    assert_eq!(srv.set_blob(SAVESTATE, 0, b"x"), res::BAD_PARAMETER);
    assert_eq!(srv.set_blob(SAVESTATE, 0, &[]), res::SUCCESS);

    assert_eq!(srv.init(), res::SUCCESS);
    assert_eq!(rc(&srv.tpm(&startup())), 0);
    assert_eq!(nv_read(&srv, 0x0150_0002).expect("nv"), b"original");
}

#[test]
fn volatile_blob_resumes_a_started_tpm_with_its_pcrs() {
    let a = Server::start();
    assert_eq!(a.init(), res::SUCCESS);
    assert_eq!(rc(&a.tpm(&startup())), 0);
    assert_eq!(rc(&a.tpm(&pcr_extend(16, [7; 32]))), 0);
    let value = pcr_read(&a, 16).expect("pcr");
    assert_ne!(value, vec![0u8; 32]);

    let (code, _, _, permanent) = a.get_blob(PERMANENT, 0);
    assert_eq!(code, res::SUCCESS);
    let (code, flags, _, volatile) = a.get_blob(VOLATILE, 0);
    assert_eq!((code, flags), (res::SUCCESS, 0));
    assert_eq!(&volatile[..8], b"TLVTPMVO");
    let (code, _, total, _) = a.get_blob(SAVESTATE, 0);
    assert_eq!((code, total), (res::SUCCESS, 0));
    // Taking blobs does not disturb the source.
    assert_eq!(pcr_read(&a, 16).expect("pcr"), value);

    let b = Server::start();
    assert_eq!(b.set_blob(PERMANENT, 0, &permanent), res::SUCCESS);
    assert_eq!(b.set_blob(VOLATILE, 0, &volatile), res::SUCCESS);
    assert_eq!(b.init(), res::SUCCESS);
    // No TPM2_Startup: resumed as it was.
    assert_eq!(pcr_read(&b, 16).expect("pcr"), value);
    assert_eq!(rc(&b.tpm(&startup())), TPM_RC_INITIALIZE);

    // An empty volatile blob cancels one set before.
    b.stop_tpm();
    assert_eq!(b.set_blob(VOLATILE, 0, &volatile), res::SUCCESS);
    assert_eq!(b.set_blob(VOLATILE, 0, &[]), res::SUCCESS);
    assert_eq!(b.init(), res::SUCCESS);
    assert_eq!(pcr_read(&b, 16), Err(TPM_RC_INITIALIZE));
}

#[test]
fn a_volatile_blob_the_engine_rejects_fails_init_and_is_dropped() {
    let srv = Server::start();
    let bad = vtpm::state::encode_volatile(b"not an engine volatile state");
    assert_eq!(srv.set_blob(VOLATILE, 0, &bad), res::SUCCESS);
    assert_eq!(srv.init(), res::FAIL);
    // Still powered off: commands fail, blobs cannot be read.
    assert_eq!(rc(&srv.tpm(&startup())), TPM_RC_FAILURE);
    assert_eq!(
        be32(&srv.ctrl_cmd(cmd::GET_STATEBLOB, &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0], 4)),
        res::BAD_ORDINAL
    );
    // The blob was used up: the next INIT is a plain _TPM_Init.
    assert_eq!(srv.init(), res::SUCCESS);
    assert_eq!(rc(&srv.tpm(&startup())), 0);
}

#[test]
fn set_stateblob_cut_short_or_oversized_is_refused_and_closed() {
    let srv = Server::start();
    srv.stop_tpm();
    // Announces 100 bytes, sends 10, then nothing: answered at the deadline, then closed.
    let mut s = srv.ctrl();
    let mut req = cmd::SET_STATEBLOB.to_be_bytes().to_vec();
    for v in [0u32, PERMANENT, 100] {
        req.extend_from_slice(&v.to_be_bytes());
    }
    req.extend_from_slice(&[0xaa; 10]);
    s.write_all(&req).expect("write");
    let mut r = [0u8; 4];
    s.read_exact(&mut r).expect("read");
    assert_eq!(be32(&r), res::BAD_PARAMETER);
    let mut more = [0u8; 1];
    assert!(matches!(s.read(&mut more), Ok(0) | Err(_)));

    // An absurd length is not waited for.
    let mut s = srv.ctrl();
    let mut req = cmd::SET_STATEBLOB.to_be_bytes().to_vec();
    for v in [0u32, PERMANENT, u32::MAX] {
        req.extend_from_slice(&v.to_be_bytes());
    }
    s.write_all(&req).expect("write");
    let mut r = [0u8; 4];
    s.read_exact(&mut r).expect("read");
    assert_eq!(be32(&r), res::BAD_PARAMETER);

    // The server still works.
    assert_eq!(srv.init(), res::SUCCESS);
    assert_eq!(rc(&srv.tpm(&startup())), 0);
}
