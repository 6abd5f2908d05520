//! `trustlaunch vtpm host` and `vtpm create|delete|list|show`: instances created through the
//! CLI, driven over their swtpm control sockets (Unix, CMD_INIT) and TCP data channels with
//! raw TPM commands; isolation, socket modes, restart, and the API's errors.

mod raw_tpm;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_trustlaunch");

struct Host(Child);
impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Host {
    /// Stop with SIGTERM (instances save their state) and wait.
    fn terminate(mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the host did not stop on SIGTERM");
    }
}

fn start_host(dir: &Path) -> Host {
    start_host_with(dir, &[])
}

fn start_host_with(dir: &Path, extra: &[&str]) -> Host {
    let child = Command::new(EXE)
        .args(["vtpm", "host", "--no-ek-cert", "--log-level", "0", "--dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the host");
    let sock = dir.join("host.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "the host never opened {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Host(child)
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(EXE)
        .arg("vtpm")
        .args(args)
        .arg("--host-dir")
        .arg(dir)
        .output()
        .expect("run the CLI")
}

fn cli_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = cli(dir, &a);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// One raw API request; the status and the body.
fn api(dir: &Path, raw: &[u8]) -> (u16, serde_json::Value) {
    let mut s = UnixStream::connect(dir.join("host.sock")).expect("API socket");
    let _ = s.write_all(raw); // the host may answer (413, 431) before reading it all
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (
        status,
        serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null),
    )
}

fn post(dir: &Path, body: &str) -> (u16, serde_json::Value) {
    let req = format!(
        "POST /v1/instances HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    api(dir, req.as_bytes())
}

struct Tpm {
    data: TcpStream,
}

impl Tpm {
    /// CMD_INIT over the instance's control socket, then TPM2_Startup(CLEAR) over TCP.
    fn connect(v: &serde_json::Value) -> Tpm {
        let mut ctrl =
            UnixStream::connect(v["ctrl_socket"].as_str().expect("ctrl_socket")).expect("ctrl");
        ctrl.write_all(&[0, 0, 0, 2, 0, 0, 0, 0]).expect("CMD_INIT");
        let mut r = [0u8; 4];
        ctrl.read_exact(&mut r).expect("CMD_INIT answer");
        assert_eq!(r, [0; 4]);
        let data = TcpStream::connect(v["data_tcp"].as_str().expect("data_tcp")).expect("data");
        data.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut t = Tpm { data };
        let rc = t.rc(&[0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0]);
        assert!(rc == 0 || rc == 0x100, "Startup rc {rc:#x}");
        t
    }

    fn transact(&mut self, cmd: &[u8]) -> Vec<u8> {
        self.data.write_all(cmd).expect("send");
        let mut head = [0u8; 10];
        self.data.read_exact(&mut head).expect("response header");
        let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        let mut r = head.to_vec();
        r.resize(size, 0);
        self.data.read_exact(&mut r[10..]).expect("response body");
        r
    }

    fn rc(&mut self, cmd: &[u8]) -> u32 {
        let r = self.transact(cmd);
        u32::from_be_bytes([r[6], r[7], r[8], r[9]])
    }

    fn extend_pcr16(&mut self, digest: [u8; 32]) {
        let mut c = vec![0x80, 0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x82, 0, 0, 0, 16];
        c.extend_from_slice(&9u32.to_be_bytes());
        c.extend_from_slice(&[0x40, 0, 0, 9, 0, 0, 0, 0, 0]);
        c.extend_from_slice(&[0, 0, 0, 1, 0, 0x0b]);
        c.extend_from_slice(&digest);
        let n = c.len() as u32;
        c[2..6].copy_from_slice(&n.to_be_bytes());
        assert_eq!(self.rc(&c), 0, "PCR_Extend");
    }

    fn read_pcr16(&mut self) -> Vec<u8> {
        let c = [
            0x80, 0x01, 0, 0, 0, 0x14, 0, 0, 0x01, 0x7e, 0, 0, 0, 1, 0, 0x0b, 3, 0, 0, 1,
        ];
        let r = self.transact(&c);
        assert_eq!(&r[6..10], &[0, 0, 0, 0], "PCR_Read");
        r[30..62].to_vec()
    }

    fn get_random(&mut self) -> u32 {
        self.rc(&[0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8])
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("host");
    (t, d)
}

#[test]
fn instances_are_isolated_listed_deleted_and_restored() {
    let (_t, d) = dir();
    let host = start_host(&d);
    assert_eq!(mode(&d.join("host.sock")), 0o600);
    let a = cli_json(&d, &["create", "vm-a", "--tcp"]);
    let b = cli_json(&d, &["create", "vm-b", "--tcp"]);
    for v in [&a, &b] {
        for k in [
            "name",
            "state_dir",
            "ctrl_socket",
            "data_tcp",
            "serving",
            "running",
            "locality",
            "established",
            "ek_cert",
            "host_pid",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(
            mode(Path::new(v["ctrl_socket"].as_str().expect("ctrl"))),
            0o600
        );
        assert_eq!(v["host_pid"].as_u64(), Some(u64::from(host.0.id())));
        assert_eq!(v["serving"], true);
        assert_eq!(v["running"], false);
    }
    assert_ne!(a["state_dir"], b["state_dir"]);

    let mut ta = Tpm::connect(&a);
    let mut tb = Tpm::connect(&b);
    let b0 = tb.read_pcr16();
    ta.extend_pcr16([0x11; 32]);
    assert_ne!(ta.read_pcr16(), b0, "the extend reached instance A");
    assert_eq!(tb.read_pcr16(), b0, "instance B saw A's extend");

    // Garbage and an oversized command to A: B keeps answering.
    let mut raw = TcpStream::connect(a["data_tcp"].as_str().expect("tcp")).expect("connect");
    raw.write_all(&[0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0x7b])
        .expect("oversized");
    let mut junk = TcpStream::connect(a["data_tcp"].as_str().expect("tcp")).expect("connect");
    let _ = junk.write_all(&[0xde; 4096]);
    assert_eq!(tb.get_random(), 0);
    assert_eq!(tb.read_pcr16(), b0);
    // A itself still answers on its good connection.
    assert_eq!(ta.get_random(), 0);

    let show = cli_json(&d, &["show", "vm-a"]);
    assert_eq!(show["running"], true);
    assert_eq!(show["name"], "vm-a");
    let list = cli_json(&d, &["list"]);
    let names: Vec<&str> = list["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["vm-a", "vm-b"]);

    let a_pcr = ta.read_pcr16();
    drop((ta, tb, raw, junk));
    host.terminate();

    // Restart: both come back, with A's NV state (PCRs reset, as after a reboot).
    let host = start_host(&d);
    let list = cli_json(&d, &["list"]);
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(2));
    let a2 = cli_json(&d, &["show", "vm-a"]);
    let mut ta = Tpm::connect(&a2);
    assert_eq!(ta.get_random(), 0);
    assert_ne!(ta.read_pcr16(), a_pcr, "PCRs reset at Startup(CLEAR)");

    // Delete one: gone from the list and from disk; the other still serves.
    let out = cli(&d, &["delete", "vm-b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("instances/vm-b").exists());
    let list = cli_json(&d, &["list"]);
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(1));
    assert_eq!(ta.get_random(), 0);
    drop(host);
}

/// The prepared instance directories of the host in `d` and the inodes of their control
/// sockets.
fn spares(d: &Path) -> Vec<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(d.join("spares")) else {
        return out;
    };
    for e in entries {
        let p = e.expect("entry").path();
        if let Ok(m) = std::fs::metadata(p.join("ctrl.sock")) {
            out.push((p, m.ino()));
        }
    }
    out
}

fn wait_for_spares(d: &Path, n: usize) -> Vec<(PathBuf, u64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = spares(d);
        if s.len() >= n {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "only {} prepared directories",
            s.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn creates_take_prepared_directories_and_save_before_anything_is_revealed() {
    use std::os::unix::fs::MetadataExt;
    let (_t, d) = dir();
    let host = start_host(&d);
    let prepared = wait_for_spares(&d, 4);

    // A create renames a prepared directory into place: its bound control socket (0600)
    // is the instance's, and it is gone from the prepared ones (which are made again).
    let a = cli_json(&d, &["create", "vm-a", "--tcp"]);
    let ctrl = PathBuf::from(a["ctrl_socket"].as_str().expect("ctrl"));
    let ino = std::fs::metadata(&ctrl).expect("ctrl.sock").ino();
    let taken = prepared.iter().find(|(_, i)| *i == ino);
    assert!(taken.is_some(), "vm-a's socket is not a prepared one");
    let (taken_dir, _) = taken.expect("taken");
    assert!(!taken_dir.exists(), "the prepared directory was renamed");
    assert_eq!(mode(&ctrl), 0o600);
    wait_for_spares(&d, 4);

    // Nothing revealed yet: INIT, Startup, GetRandom and an extend leave nothing on disk.
    let state = d.join("instances/vm-a/state/tpm2-state.bin");
    let mut ta = Tpm::connect(&a);
    assert_eq!(ta.get_random(), 0);
    ta.extend_pcr16([0x22; 32]);
    assert!(!state.exists(), "saved although nothing was revealed");

    // A revealing command (NV_DefineSpace, NV_Write) is answered only once saved.
    let r = raw_tpm::transact(&mut ta.data, &raw_tpm::nv_define()).expect("define");
    assert_eq!(raw_tpm::rc(&r), 0, "NV_DefineSpace");
    assert!(state.exists(), "answered before the state was saved");
    let r = raw_tpm::transact(&mut ta.data, &raw_tpm::nv_write(0x1234_5678)).expect("write");
    assert_eq!(raw_tpm::rc(&r), 0, "NV_Write");

    // vm-b reveals nothing before the host dies.
    let b = cli_json(&d, &["create", "vm-b", "--tcp"]);
    let mut tb = Tpm::connect(&b);
    assert_eq!(tb.get_random(), 0);
    drop((ta, tb));
    let pid = host.0.id();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    drop(host);

    // After the crash: vm-a has what it answered; vm-b starts with a TPM manufactured
    // afresh (its first one was never seen); the prepared directories of the dead host
    // are removed and new ones made.
    let old: Vec<PathBuf> = spares(&d).into_iter().map(|(p, _)| p).collect();
    assert!(!old.is_empty());
    let host = start_host(&d);
    let a2 = cli_json(&d, &["show", "vm-a"]);
    let mut ta = Tpm::connect(&a2);
    let r = raw_tpm::transact(&mut ta.data, &raw_tpm::nv_read()).expect("read");
    assert_eq!(raw_tpm::rc(&r), 0, "NV_Read");
    assert_eq!(r.len(), 10 + 4 + 2 + 8 + 5, "NV_Read response");
    assert_eq!(&r[16..24], &0x1234_5678u64.to_be_bytes());
    let b2 = cli_json(&d, &["show", "vm-b"]);
    let mut tb = Tpm::connect(&b2);
    assert_eq!(tb.get_random(), 0);
    wait_for_spares(&d, 4);
    for p in old {
        assert!(!p.exists(), "{} was reused or left behind", p.display());
    }

    // A clean stop removes the prepared directories.
    drop((ta, tb));
    host.terminate();
    assert!(
        spares(&d).is_empty(),
        "prepared directories left after a stop"
    );
}

/// NV_DefineSpace then NV_Write(`value`) on a started instance: revealing commands, so
/// the state is saved before they are answered.
/// Creates in a burst: the host makes prepared directories and threads only once creates
/// pause, so a burst longer than what is prepared makes its own, and every instance serves.
#[test]
fn a_burst_of_creates_beyond_the_prepared_directories_is_served_and_they_are_made_again() {
    let (_t, d) = dir();
    let _host = start_host(&d);
    wait_for_spares(&d, 4);
    let created: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let (status, v) = post(&d, &format!(r#"{{"name":"burst-{i}","tcp":true}}"#));
            assert_eq!(status, 201, "create burst-{i}: {v}");
            v
        })
        .collect();
    let mut sockets = std::collections::BTreeSet::new();
    for v in &created {
        let ctrl = PathBuf::from(v["ctrl_socket"].as_str().expect("ctrl_socket"));
        assert_eq!(mode(&ctrl), 0o600);
        assert!(sockets.insert(ctrl), "two instances share a control socket");
        let mut t = Tpm::connect(v);
        assert_eq!(t.get_random(), 0, "{}", v["name"]);
    }
    wait_for_spares(&d, 4);
}

/// Prepared directories come with a TPM manufactured ahead: a create asking for EK
/// certificates has them derived into it, a create that does not gets a bare TPM.
#[test]
fn a_prepared_tpm_is_endorsed_only_when_the_create_asks() {
    let (_t, d) = dir();
    let ca = tempfile::tempdir().expect("tempdir");
    let log = ca.path().join("host.log");
    let child = Command::new(EXE)
        .args(["vtpm", "host", "--log-level", "2", "--ca-dir"])
        .arg(ca.path())
        .arg("--dir")
        .arg(&d)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the host");
    let _host = Host(child);
    let prepared = wait_for_spares(&d, 4);
    let (status, ek) = post(&d, r#"{"name":"with-ek","tcp":true,"ek_cert":true}"#);
    assert_eq!(status, 201, "{ek}");
    let (status, bare) = post(&d, r#"{"name":"bare","tcp":true,"ek_cert":false}"#);
    assert_eq!(status, 201, "{bare}");
    for v in [&ek, &bare] {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(v["ctrl_socket"].as_str().expect("ctrl")).expect("stat");
        assert!(
            prepared.iter().any(|(_, i)| *i == ino.ino()),
            "{} did not take a prepared directory",
            v["name"]
        );
    }
    // TPM2_NV_ReadPublic of the RSA EK certificate's index (0x01C00002).
    let read_public = [
        0x80, 0x01, 0, 0, 0, 0x0e, 0, 0, 0x01, 0x69, 0x01, 0xc0, 0, 0x02,
    ];
    assert_eq!(Tpm::connect(&ek).rc(&read_public), 0, "no EK certificate");
    // TPM_RC_HANDLE for handle 1: no such index.
    assert_eq!(
        Tpm::connect(&bare).rc(&read_public),
        0x18b,
        "a bare TPM has an EK certificate"
    );
    let log = std::fs::read_to_string(&log).expect("host log");
    for name in ["with-ek", "bare"] {
        let state = d.join("instances").join(name).join("state");
        let line = format!("a new TPM (manufactured ahead) in {}", state.display());
        assert!(log.contains(&line), "no {line:?} in the host's log:\n{log}");
    }
}

/// A directory already in an instance's place (one that did not restore, or an empty one)
/// makes its create a 409, whether the create takes a prepared directory or makes one,
/// and is left as it was; the prepared directory is not lost.
#[test]
fn a_create_never_replaces_a_directory_in_its_place() {
    let (_t, d) = dir();
    std::fs::create_dir_all(d.join("instances/kept/state")).expect("mkdir");
    std::fs::write(d.join("instances/kept/state/tpm2-state.bin"), b"not ours").expect("write");
    std::fs::create_dir_all(d.join("instances/empty")).expect("mkdir");
    let _host = start_host(&d);
    let before = wait_for_spares(&d, 4);
    for name in ["kept", "empty"] {
        let (status, v) = post(&d, &format!(r#"{{"name":"{name}"}}"#));
        assert_eq!(status, 409, "{name}: {v}");
        assert!(
            v["error"]
                .as_str()
                .expect("message")
                .contains("already exists"),
            "{v}"
        );
    }
    assert_eq!(
        std::fs::read(d.join("instances/kept/state/tpm2-state.bin")).expect("kept"),
        b"not ours"
    );
    assert!(d.join("instances/empty").is_dir());
    assert_eq!(
        std::fs::read_dir(d.join("instances/empty"))
            .expect("ls")
            .count(),
        0
    );
    // The prepared directories the refused creates took are back.
    let mut after = spares(&d);
    let mut before = before;
    after.sort();
    before.sort();
    assert_eq!(after, before);
    // With no prepared directory left, the create that makes its own is refused alike.
    for i in 0..4 {
        assert_eq!(post(&d, &format!(r#"{{"name":"use-{i}"}}"#)).0, 201);
    }
    let (status, v) = post(&d, r#"{"name":"kept"}"#);
    assert_eq!(status, 409, "{v}");
    assert_eq!(
        std::fs::read(d.join("instances/kept/state/tpm2-state.bin")).expect("kept"),
        b"not ours"
    );
}

fn define_and_write(t: &mut Tpm, value: u64) {
    let r = raw_tpm::transact(&mut t.data, &raw_tpm::nv_define()).expect("define");
    assert_eq!(raw_tpm::rc(&r), 0, "NV_DefineSpace");
    let r = raw_tpm::transact(&mut t.data, &raw_tpm::nv_write(value)).expect("write");
    assert_eq!(raw_tpm::rc(&r), 0, "NV_Write");
}

fn nv_value(t: &mut Tpm) -> Vec<u8> {
    let r = raw_tpm::transact(&mut t.data, &raw_tpm::nv_read()).expect("read");
    assert_eq!(raw_tpm::rc(&r), 0, "NV_Read");
    r[16..24].to_vec()
}

fn instance_names(d: &Path) -> Vec<String> {
    cli_json(d, &["list"])["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn host_key_encrypts_each_instance_under_its_own_key() {
    let (t, d) = dir();
    let key = t.path().join("host.key");
    std::fs::write(&key, "4a".repeat(32)).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key_opt = format!("file={}", key.display());
    let host = start_host_with(&d, &["--key", &key_opt]);
    let a = cli_json(&d, &["create", "vm-a", "--tcp"]);
    let b = cli_json(&d, &["create", "vm-b", "--tcp"]);
    let mut ta = Tpm::connect(&a);
    define_and_write(&mut ta, 0xaaaa);
    let mut tb = Tpm::connect(&b);
    define_and_write(&mut tb, 0xbbbb);
    drop((ta, tb));
    host.terminate();

    // Encrypted (the envelope's flag) and not readable as a plaintext state.
    let state = |n: &str| d.join("instances").join(n).join("state/tpm2-state.bin");
    let a_state = std::fs::read(state("vm-a")).expect("vm-a state");
    assert_eq!(&a_state[..8], b"TLVTPMST");
    assert_eq!(&a_state[12..16], &[0, 0, 0, 1], "encryption flag");

    // Without the key nothing starts, and nothing is touched.
    let host = start_host(&d);
    assert!(instance_names(&d).is_empty(), "started without the key");
    host.terminate();
    assert_eq!(std::fs::read(state("vm-a")).expect("read"), a_state);

    // vm-a's state copied into vm-b: vm-b's key does not open it, so vm-b stays down
    // (and its files stay as they are) while vm-a comes back with its NV value.
    std::fs::copy(state("vm-a"), state("vm-b")).expect("copy");
    let host = start_host_with(&d, &["--key", &key_opt]);
    assert_eq!(instance_names(&d), ["vm-a"]);
    let a2 = cli_json(&d, &["show", "vm-a"]);
    let mut ta = Tpm::connect(&a2);
    assert_eq!(nv_value(&mut ta), 0xaaaau64.to_be_bytes());
    assert_eq!(std::fs::read(state("vm-b")).expect("read"), a_state);
    drop(ta);
    host.terminate();
}

#[test]
fn api_errors() {
    let (_t, d) = dir();
    let out = cli(&d, &["list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trustlaunch vtpm host"), "{err}");

    let _host = start_host(&d);
    for bad in ["Bad", "-x", "", "a_b", &"a".repeat(64)] {
        let (status, v) = post(&d, &format!("{{\"name\":\"{bad}\"}}"));
        assert_eq!(status, 400, "{bad:?}: {v}");
        assert!(v["error"]
            .as_str()
            .expect("message")
            .contains("invalid instance name"));
    }
    let out = cli(&d, &["create", "Bad"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("400"));

    let (status, _) = post(&d, "{\"name\":\"one\"}");
    assert_eq!(status, 201);
    let (status, v) = post(&d, "{\"name\":\"one\"}");
    assert_eq!(status, 409, "{v}");
    assert!(v["error"]
        .as_str()
        .expect("message")
        .contains("already exists"));

    let (status, v) = api(&d, b"GET /v1/instances/nope HTTP/1.1\r\n\r\n");
    assert_eq!(status, 404, "{v}");
    let (status, _) = api(&d, b"DELETE /v1/instances/nope HTTP/1.1\r\n\r\n");
    assert_eq!(status, 404);
    let out = cli(&d, &["show", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    let (status, v) = post(&d, "{\"name\":\"x\",\"bogus\":1}");
    assert_eq!(status, 400);
    assert!(v["error"]
        .as_str()
        .expect("message")
        .contains("unknown field"));
    let (status, _) = post(&d, "not json");
    assert_eq!(status, 400);
    let (status, _) = post(&d, "{\"name\":\"y\",\"ek_cert\":true}");
    assert_eq!(status, 400, "no CA on this host");
    let big = format!("{{\"name\":\"{}\"}}", "a".repeat(8000));
    let (status, _) = post(&d, &big);
    assert_eq!(status, 413);
    let mut head = b"GET /v1/instances HTTP/1.1\r\nX: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 9000));
    head.extend_from_slice(b"\r\n\r\n");
    let (status, _) = api(&d, &head);
    assert_eq!(status, 431);
    let (status, _) = api(&d, b"PUT /v1/instances HTTP/1.1\r\n\r\n");
    assert_eq!(status, 405);
    let (status, _) = api(&d, b"garbage\r\n\r\n");
    assert_eq!(status, 400);
    // The host still serves.
    let (status, v) = api(&d, b"GET /v1/instances HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(v["instances"].as_array().map(Vec::len), Some(1));
}

/// The API is answered by a few workers (no thread per request): clients that connect and
/// send nothing hold one worker each, the others keep answering, and a stalled client is
/// answered 408 at the request deadline, freeing its worker.
#[test]
fn stalled_api_clients_hold_one_worker_each_until_the_deadline() {
    let (_t, d) = dir();
    let _host = start_host(&d);
    let stalled: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(d.join("host.sock")).expect("connect"))
        .collect();
    for _ in 0..5 {
        let t = Instant::now();
        let (status, v) = api(&d, b"GET /v1/instances HTTP/1.1\r\n\r\n");
        assert_eq!(status, 200, "{v}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "answered in {:?} beside three stalled clients",
            t.elapsed()
        );
    }
    let t = Instant::now();
    for mut s in stalled {
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "stalled clients answered after {:?}",
        t.elapsed()
    );
}
