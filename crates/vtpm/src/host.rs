//! One process serving many vTPMs: the instance registry behind `trustlaunch vtpm host`.
//!
//! Each instance is an [`Instance`] with its own state directory
//! (`DIR/instances/NAME/state`) and its own swtpm control socket
//! (`DIR/instances/NAME/ctrl.sock`, mode 0600: what QEMU's `-chardev socket,path=…`
//! plus `-tpmdev emulator` connects to; the data channel arrives with CMD_SET_DATAFD),
//! optionally with a TCP data channel on 127.0.0.1. Every instance is served by
//! [`crate::swtpm::serve`] on its own thread with its own [`StopHandle`]: instances share
//! no state, and a failure (an engine panic answers TPM_RC_FAILURE) stays in its instance.
//! With a key ([`Host::with_state_key`]) each instance's state is encrypted at rest under
//! the key given for its name. Creates take a prepared directory and a TPM manufactured
//! ahead ([`Host::keep_spares`]), and a new TPM is saved before its first revealing answer,
//! so a create's only file-system work is a rename and writing `instance.json`.
//!
//! # Management API
//!
//! HTTP/1.1 over the Unix socket `DIR/host.sock` (mode 0600), one request per connection
//! (`Connection: close`), JSON bodies. Requests: headers at most 8 KiB (431), bodies at most
//! 4 KiB (413), `Content-Length` only (chunked bodies: 501), complete within 5 s (408).
//!
//! | Request                      | Success                | Errors                  |
//! |------------------------------|------------------------|-------------------------|
//! | `GET /v1/host`               | 200 host               |                         |
//! | `GET /v1/instances`          | 200 `{"instances":[…]}`|                         |
//! | `POST /v1/instances`         | 201 instance           | 400, 409, 500           |
//! | `GET /v1/instances/NAME`     | 200 instance           | 400, 404                |
//! | `DELETE /v1/instances/NAME`  | 200 `{"deleted":NAME}` | 400, 404, 500           |
//!
//! The create body is `{"name": NAME, "tcp": bool, "ek_cert": bool}` (`tcp` defaults to
//! false, `ek_cert` to the host's default); unknown fields are refused. NAME matches
//! `[a-z0-9][a-z0-9-]{0,62}`. An instance is `{"name", "state_dir", "ctrl_socket",
//! "data_tcp" (address or null), "serving", "running", "locality", "established",
//! "ek_cert", "host_pid"}`. Errors are `{"error": MESSAGE}`.

use crate::instance::{Endorsement, FirstSave, Instance, NewTpm};
use crate::key::KeyProvider;
use crate::log::Log;
use crate::net::{Endpoint, Listener, StopHandle, Stream};
use crate::state::StateDir;
use crate::swtpm::{self, SocketConfig};
use crate::ManufacturerCa;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The API socket's file name in the host directory.
pub const API_SOCKET: &str = "host.sock";
/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 4 * 1024;
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Stack of an idle instance's accept thread (it only polls and accepts).
const INSTANCE_STACK: usize = 256 * 1024;
/// Threads answering the management API (see [`Host::serve_api`]).
const API_WORKERS: usize = 4;

/// Whether `name` is a valid instance name: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// An API error: an HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

fn err(status: u16, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

fn bad_name(name: &str) -> ApiError {
    err(
        400,
        format!(
            "invalid instance name {name:?}: use 1 to 63 characters a-z, 0-9 and '-', \
             starting with a letter or digit"
        ),
    )
}

/// How instances are created.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Also serve the data channel on TCP 127.0.0.1 (an ephemeral port).
    pub tcp: bool,
    /// Provision EKs and EK certificates (`None`: the host's default).
    pub ek_cert: Option<bool>,
}

struct Running {
    instance: Arc<Instance>,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
    ctrl: PathBuf,
    tcp: Option<SocketAddr>,
    ek_cert: bool,
}

/// How many prepared instance directories [`Host::keep_spares`] keeps by default.
pub const SPARES: usize = 4;
/// Where prepared instance directories wait (`DIR/spares/PID-N`), and where they are built
/// (`DIR/spares/building/PID-N`): a create's rename and the inode allocations of building the
/// next spare take no common directory lock.
const SPARES_DIR: &str = "spares";
const BUILDING_DIR: &str = "building";

/// An instance directory made ahead of a create, off the request's path: the directory
/// and its state directory (opened and locked), an empty `instance.json` (kept open), the
/// control socket bound with mode 0600, and a TPM manufactured in memory (unendorsed: a
/// create asking for EKs derives them). A create renames the directory into place, so the
/// request's only file-system work is that rename (allocating the inodes costs far more on
/// a busy file system). A spare is never reused across host starts (`restore` removes any
/// left behind, and its TPM was never saved).
struct Spare {
    dir: PathBuf,
    prepared: Prepared,
}

/// What a [`Spare`] gives its instance.
struct Prepared {
    state: StateDir,
    ctrl: Listener,
    config: fs::File,
    tpm: Option<NewTpm>,
}

/// What a parked thread is given to run: an instance's server.
type Job = Box<dyn FnOnce() + Send>;

/// A thread started ahead of a create, waiting for the instance it will serve: a create
/// hands its server to a thread that is already running instead of starting one, whose
/// start-up (stack, signal stack) would otherwise delay the instance's first answer. Parked
/// threads are started by the housekeeping thread (see [`QUIET`]).
struct Parked {
    job: std::sync::mpsc::SyncSender<Job>,
    thread: JoinHandle<()>,
}

/// Threads kept parked.
const PARKED: usize = 2;

fn park_thread() -> io::Result<Parked> {
    let (job, jobs) = std::sync::mpsc::sync_channel::<Job>(1);
    let thread = std::thread::Builder::new()
        .name("vtpm-instance".into())
        .stack_size(INSTANCE_STACK)
        .spawn(move || {
            // The host dropped its end: nothing to run.
            if let Ok(job) = jobs.recv() {
                job();
            }
        })?;
    Ok(Parked { job, thread })
}

/// How long creates must have stopped before the housekeeping thread makes spares and
/// starts parked threads. A new instance's first exchanges (CMD_SET_DATAFD, CMD_INIT,
/// TPM2_Startup, ...) follow its create within a millisecond; work started beside them
/// takes a CPU they would otherwise share with their client, and a thread woken behind it
/// waits for the CPU, so the work waits for a pause, unless a burst of creates has used up
/// every prepared directory (then throughput matters more). Creates that find nothing
/// prepared make their directory and thread themselves.
pub const QUIET: Duration = Duration::from_millis(5);

/// The prepared directories, and what the housekeeping thread needs to know.
#[derive(Default)]
struct Spares {
    ready: Vec<Spare>,
    wanted: usize,
    stopped: bool,
    /// When the last create started or was answered.
    last_create: Option<Instant>,
    /// The housekeeping thread has nothing to do: a create must wake it.
    idle: bool,
}

/// The registry of a host's instances.
pub struct Host {
    dir: PathBuf,
    ca_dir: Option<PathBuf>,
    ca: Mutex<Option<Arc<ManufacturerCa>>>,
    instances: Mutex<BTreeMap<String, Running>>,
    creating: Mutex<BTreeSet<String>>,
    spares: Mutex<Spares>,
    spares_changed: Condvar,
    spare_serial: AtomicU64,
    /// Threads started ahead of creates (see [`Parked`]).
    parked: Mutex<Vec<Parked>>,
    /// Encryption of every instance's state at rest (each under its own derived key).
    key: Option<Arc<dyn KeyProvider>>,
    /// With a key: accept (and encrypt) instances whose state is still plaintext.
    encrypt_existing_state: bool,
    log: Log,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("dir", &self.dir).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Host {
    /// A host over `dir` (created 0700 if missing). `ca_dir`: EK certificates for new
    /// instances from the manufacturer CA kept there (`None`: bare TPMs by default).
    pub fn new(dir: &Path, ca_dir: Option<PathBuf>, log: Log) -> io::Result<Arc<Host>> {
        Self::with_state_key(dir, ca_dir, None, false, log)
    }

    /// As [`Host::new`], encrypting every instance's state at rest with the key `key` gives
    /// for the instance's name (wrap a host key in [`crate::key::PerInstanceKeys`] so each
    /// instance has its own). `encrypt_existing_state`: accept an instance whose state is
    /// still plaintext and encrypt it at once (otherwise it is refused, so that a forged
    /// plaintext file cannot replace an encrypted one).
    pub fn with_state_key(
        dir: &Path,
        ca_dir: Option<PathBuf>,
        key: Option<Arc<dyn KeyProvider>>,
        encrypt_existing_state: bool,
        log: Log,
    ) -> io::Result<Arc<Host>> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("instances"))?;
        Ok(Arc::new(Host {
            dir: dir.to_path_buf(),
            ca_dir,
            ca: Mutex::new(None),
            instances: Mutex::new(BTreeMap::new()),
            creating: Mutex::new(BTreeSet::new()),
            spares: Mutex::new(Spares::default()),
            parked: Mutex::new(Vec::new()),
            spares_changed: Condvar::new(),
            spare_serial: AtomicU64::new(0),
            key,
            encrypt_existing_state,
            log,
        }))
    }

    /// Keep `n` prepared instance directories ready (see [`Spare`]) and [`PARKED`] threads
    /// waiting from now on, made by a housekeeping thread once creates pause ([`QUIET`]);
    /// creates take them when there are some. Call it once the host owns the directory
    /// (after [`bind_api`] and [`Host::restore`]).
    pub fn keep_spares(self: &Arc<Self>, n: usize) -> io::Result<()> {
        lock(&self.spares).wanted = n;
        self.refill_parked();
        let host = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("vtpm-host-spares".into())
            .stack_size(INSTANCE_STACK)
            .spawn(move || housekeeping_loop(host))
            .map(drop)
    }
}

impl Host {
    fn make_spare(&self) -> io::Result<Spare> {
        let n = self.spare_serial.fetch_add(1, Ordering::Relaxed);
        let building = self.dir.join(SPARES_DIR).join(BUILDING_DIR);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&building)?;
        // The process id keeps the names of this run's spares apart from a dead host's.
        let name = format!("{}-{n}", std::process::id());
        let dir = building.join(&name);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let made = (|| {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join("state"))?;
            let state = StateDir::open(dir.join("state")).map_err(io::Error::other)?;
            state.prepare()?;
            let config = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join("instance.json"))?;
            let mut ctrl = Listener::bind(&Endpoint::Unix {
                path: dir.join("ctrl.sock"),
                mode: Some(0o600),
                uid: None,
                gid: None,
            })?;
            let tpm = NewTpm::manufacture()
                .map_err(|e| {
                    self.log
                        .error(format_args!("cannot manufacture a TPM: {e}"))
                })
                .ok();
            let ready = self.dir.join(SPARES_DIR).join(&name);
            fs::rename(&dir, &ready)?;
            let mut state = state;
            state.relocate(ready.join("state"));
            ctrl.relocate(ready.join("ctrl.sock"));
            Ok(Spare {
                dir: ready,
                prepared: Prepared {
                    state,
                    ctrl,
                    config,
                    tpm,
                },
            })
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        made
    }

    /// Run an instance's server on a parked thread, or on a new one if none is parked.
    fn run_on_thread(&self, name: &str, job: Job) -> Result<JoinHandle<()>, ApiError> {
        let parked = lock(&self.parked).pop();
        let job = match parked {
            Some(p) => match p.job.send(job) {
                Ok(()) => return Ok(p.thread),
                // The parked thread is gone (it cannot be, short of a bug): a new one.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        std::thread::Builder::new()
            .name(format!("vtpm-{name}"))
            .stack_size(INSTANCE_STACK)
            .spawn(job)
            .map_err(|e| err(500, format!("instance {name}: cannot start a thread: {e}")))
    }

    /// Start parked threads until [`PARKED`] wait.
    fn refill_parked(&self) {
        loop {
            if lock(&self.parked).len() >= PARKED || lock(&self.spares).stopped {
                return;
            }
            match park_thread() {
                Ok(p) => lock(&self.parked).push(p),
                Err(e) => {
                    self.log
                        .warn(format_args!("cannot start a thread ahead of creates: {e}"));
                    return;
                }
            }
        }
    }

    /// A prepared directory, if one is ready; notes the create for the housekeeping thread.
    fn take_spare(&self) -> Option<Spare> {
        let mut spares = lock(&self.spares);
        spares.last_create = Some(Instant::now());
        spares.ready.pop()
    }

    /// After a create was answered: the pause [`QUIET`] counts from here (a create can
    /// take long, deriving EKs), and the housekeeping thread is woken if it stopped
    /// watching.
    fn created(&self) {
        let mut spares = lock(&self.spares);
        spares.last_create = Some(Instant::now());
        if std::mem::take(&mut spares.idle) {
            self.spares_changed.notify_all();
        }
    }

    /// The host directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn instance_dir(&self, name: &str) -> PathBuf {
        self.dir.join("instances").join(name)
    }

    /// Start every instance found in the host directory; returns how many started.
    /// Instances that fail to start are logged and left on disk.
    /// Prepared directories left by an earlier run are removed (a spare is never reused).
    pub fn restore(self: &Arc<Self>) -> usize {
        let Ok(entries) = fs::read_dir(self.dir.join("instances")) else {
            return 0;
        };
        let all: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let spares = self.dir.join(SPARES_DIR);
        match fs::remove_dir_all(&spares) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => self
                .log
                .error(format_args!("cannot remove {}: {e}", spares.display())),
            _ => {}
        }
        let mut names: Vec<String> = all.into_iter().filter(|n| valid_name(n)).collect();
        names.sort();
        let mut n = 0;
        for name in names {
            let d = self.instance_dir(&name);
            if !d.join("state").is_dir() {
                continue;
            }
            let cfg: Value = fs::read(d.join("instance.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            let opts = CreateOptions {
                tcp: cfg["tcp"].as_bool().unwrap_or(false),
                ek_cert: Some(cfg["ek_cert"].as_bool().unwrap_or(false)),
            };
            let port = cfg["tcp_port"].as_u64().and_then(|p| u16::try_from(p).ok());
            match self.start(&name, &opts, port, None) {
                Ok(_) => n += 1,
                Err(e) => self
                    .log
                    .error(format_args!("instance {name}: not restored: {}", e.message)),
            }
        }
        n
    }

    fn endorsement(&self, ek_cert: bool) -> Result<Endorsement, ApiError> {
        if !ek_cert {
            return Ok(Endorsement::None);
        }
        let Some(dir) = &self.ca_dir else {
            return Err(err(
                400,
                "this host has no manufacturer CA (started with --no-ek-cert): \
                 create with \"ek_cert\": false",
            ));
        };
        let mut ca = lock(&self.ca);
        if let Some(ca) = &*ca {
            return Ok(Endorsement::Ca(Arc::clone(ca)));
        }
        let loaded = Arc::new(
            ManufacturerCa::load_or_create(dir)
                .map_err(|e| err(500, format!("manufacturer CA in {}: {e}", dir.display())))?,
        );
        *ca = Some(Arc::clone(&loaded));
        Ok(Endorsement::Ca(loaded))
    }

    /// Create and start a new instance.
    pub fn create(self: &Arc<Self>, name: &str, opts: &CreateOptions) -> Result<Value, ApiError> {
        let created = self.create_and_start(name, opts);
        self.created();
        created
    }

    /// Create and start a new instance (the housekeeping thread is told by the caller, once
    /// the create is answered: [`Host::created`]).
    fn create_and_start(
        self: &Arc<Self>,
        name: &str,
        opts: &CreateOptions,
    ) -> Result<Value, ApiError> {
        if !valid_name(name) {
            return Err(bad_name(name));
        }
        let exists = || err(409, format!("instance {name} already exists"));
        {
            let instances = lock(&self.instances);
            let mut creating = lock(&self.creating);
            if instances.contains_key(name) || creating.contains(name) {
                return Err(exists());
            }
            creating.insert(name.to_string());
        }
        let result = self.create_dir_and_start(name, opts);
        lock(&self.creating).remove(name);
        result.map_err(|e| e.unwrap_or_else(exists))
    }

    /// Put the instance's directory in place (a prepared one, renamed without replacing
    /// anything, or a new one) and start it. `Err(None)`: a directory of that name is
    /// already there (an instance that did not restore, say), and is left alone.
    fn create_dir_and_start(
        self: &Arc<Self>,
        name: &str,
        opts: &CreateOptions,
    ) -> Result<Value, Option<ApiError>> {
        let d = self.instance_dir(name);
        let prepared = match self.take_spare() {
            Some(mut spare) => match rename_noreplace(&spare.dir, &d) {
                Ok(()) => {
                    spare.prepared.state.relocate(d.join("state"));
                    spare.prepared.ctrl.relocate(d.join("ctrl.sock"));
                    Some(spare.prepared)
                }
                Err(e) if is_exists(&e) => {
                    lock(&self.spares).ready.push(spare);
                    return Err(None);
                }
                Err(e) => {
                    self.log.error(format_args!(
                        "cannot rename {} to {}: {e}",
                        spare.dir.display(),
                        d.display()
                    ));
                    remove_spare(spare);
                    None
                }
            },
            None => None,
        };
        if prepared.is_none() {
            match fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {}
                Err(e) if is_exists(&e) => return Err(None),
                Err(e) => {
                    return Err(Some(err(
                        500,
                        format!("cannot create {}: {e}", d.display()),
                    )))
                }
            }
        }
        // The directory is this create's own from here: a failure removes it.
        self.start(name, opts, None, prepared).map_err(|e| {
            let _ = fs::remove_dir_all(&d);
            Some(e)
        })
    }

    /// Open (or manufacture) the instance's TPM, bind its sockets and serve it.
    /// `prepared`: what a [`Spare`] renamed into place holds. A new TPM is saved before its
    /// first revealing response ([`FirstSave::BeforeReveal`]), not here.
    fn start(
        self: &Arc<Self>,
        name: &str,
        opts: &CreateOptions,
        port: Option<u16>,
        prepared: Option<Prepared>,
    ) -> Result<Value, ApiError> {
        let d = self.instance_dir(name);
        let ek_cert = opts.ek_cert.unwrap_or(self.ca_dir.is_some());
        let endorsement = self.endorsement(ek_cert)?;
        let ctrl_path = d.join("ctrl.sock");
        let (state, ctrl, config, new_tpm) = match prepared {
            Some(p) => (p.state, p.ctrl, Some(p.config), p.tpm),
            None => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(d.join("state"))
                    .map_err(|e| err(500, format!("instance {name}: {e}")))?;
                let state = StateDir::open(d.join("state"))
                    .map_err(|e| err(500, format!("instance {name}: {e}")))?;
                let ctrl = Listener::bind(&Endpoint::Unix {
                    path: ctrl_path.clone(),
                    mode: Some(0o600),
                    uid: None,
                    gid: None,
                })
                .map_err(|e| {
                    err(
                        500,
                        format!("instance {name}: cannot bind {}: {e}", ctrl_path.display()),
                    )
                })?;
                (state, ctrl, None, None)
            }
        };
        let state = match &self.key {
            Some(key) => state
                .with_key_for(key.as_ref(), name)
                .map_err(|e| err(500, format!("instance {name}: {e}")))?
                .allow_plaintext_upgrade(self.encrypt_existing_state),
            None => state,
        };
        let log = self.log.clone();
        let instance = Arc::new(
            Instance::open_prepared(state, log, &endorsement, FirstSave::BeforeReveal, new_tpm)
                .map_err(|e| err(500, format!("instance {name}: {e}")))?,
        );
        let (data, tcp) = if opts.tcp {
            let bound = port
                .and_then(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).ok())
                .map_or_else(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)), Ok)
                .map_err(|e| err(500, format!("instance {name}: cannot bind TCP: {e}")))?;
            let addr = bound.local_addr().ok();
            (Some(Listener::from_tcp(bound)), addr)
        } else {
            (None, None)
        };
        let cfg = json!({"tcp": opts.tcp, "tcp_port": tcp.map(|a| a.port()), "ek_cert": ek_cert});
        let cfg = cfg.to_string();
        match config {
            // A prepared directory's file is empty.
            Some(f) => {
                use std::os::unix::fs::FileExt;
                f.write_all_at(cfg.as_bytes(), 0)
            }
            None => write_config(&d.join("instance.json"), cfg.as_bytes()),
        }
        .map_err(|e| err(500, format!("instance {name}: {e}")))?;
        let stop = StopHandle::new().map_err(|e| err(500, format!("instance {name}: {e}")))?;
        let mut config = SocketConfig::new(data, Some(ctrl));
        config.max_connections = 16;
        // The server starts before the create is answered: by the time the client's first
        // request (CMD_SET_DATAFD) arrives, the server is waiting for it, and wakes on the
        // client's CPU more often than when the request reaches it still starting.
        let thread = {
            let instance = Arc::clone(&instance);
            let stop = stop.clone();
            let log = self.log.clone();
            let label = name.to_string();
            let job: Job = Box::new(move || {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    swtpm::serve(instance, config, stop)
                })) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => log.error(format_args!("instance {label}: {e}")),
                    Err(_) => log.error(format_args!("instance {label}: server panicked")),
                }
            });
            self.run_on_thread(name, job)?
        };
        let running = Running {
            instance,
            stop,
            thread: Some(thread),
            ctrl: ctrl_path,
            tcp,
            ek_cert,
        };
        let shown = self.describe(name, &running);
        lock(&self.instances).insert(name.to_string(), running);
        self.log.info(format_args!("instance {name} started"));
        Ok(shown)
    }

    fn describe(&self, name: &str, r: &Running) -> Value {
        json!({
            "name": name,
            "state_dir": self.instance_dir(name).join("state"),
            "ctrl_socket": r.ctrl,
            "data_tcp": r.tcp.map(|a| a.to_string()),
            "serving": r.thread.as_ref().is_some_and(|t| !t.is_finished()),
            "running": r.instance.is_running(),
            "locality": r.instance.locality(),
            "established": r.instance.established(),
            "ek_cert": r.ek_cert,
            "host_pid": std::process::id(),
        })
    }

    /// One instance's description.
    pub fn show(&self, name: &str) -> Result<Value, ApiError> {
        if !valid_name(name) {
            return Err(bad_name(name));
        }
        let instances = lock(&self.instances);
        let r = instances
            .get(name)
            .ok_or_else(|| err(404, format!("no instance named {name}")))?;
        Ok(self.describe(name, r))
    }

    /// All instances, by name.
    pub fn list(&self) -> Value {
        let instances = lock(&self.instances);
        let all: Vec<Value> = instances.iter().map(|(n, r)| self.describe(n, r)).collect();
        json!({ "instances": all })
    }

    /// Stop an instance and remove its directory (state included).
    pub fn delete(&self, name: &str) -> Result<Value, ApiError> {
        if !valid_name(name) {
            return Err(bad_name(name));
        }
        let r = lock(&self.instances)
            .remove(name)
            .ok_or_else(|| err(404, format!("no instance named {name}")))?;
        stop_instance(r);
        let d = self.instance_dir(name);
        fs::remove_dir_all(&d).map_err(|e| {
            err(
                500,
                format!("instance {name} stopped, but {}: {e}", d.display()),
            )
        })?;
        self.log.info(format_args!("instance {name} deleted"));
        Ok(json!({ "deleted": name }))
    }

    /// Stop every instance (each saves its state) and remove the prepared directories.
    pub fn stop_all(&self) {
        let spares = {
            let mut s = lock(&self.spares);
            s.stopped = true;
            std::mem::take(&mut s.ready)
        };
        self.spares_changed.notify_all();
        spares.into_iter().for_each(remove_spare);
        // Their job senders dropped, parked threads return at once.
        for p in std::mem::take(&mut *lock(&self.parked)) {
            drop(p.job);
            let _ = p.thread.join();
        }
        let all = std::mem::take(&mut *lock(&self.instances));
        for r in all.values() {
            r.stop.stop();
        }
        for (_, r) in all {
            stop_instance(r);
        }
    }

    fn host_info(&self) -> Value {
        json!({
            "pid": std::process::id(),
            "dir": self.dir,
            "instances": lock(&self.instances).len(),
            "ek_cert_default": self.ca_dir.is_some(),
            "state_encrypted": self.key.is_some(),
        })
    }

    /// Serve the management API on `listener` until `stop` fires, with [`API_WORKERS`]
    /// threads (this one included) that each accept a connection and answer it. The
    /// listener is registered exclusively in each worker's epoll set, so a connection
    /// wakes one idle worker, which answers it on the spot: no thread is started per
    /// request, and a client that stalls holds one worker for at most the request deadline.
    pub fn serve_api(self: &Arc<Self>, listener: &Listener, stop: &StopHandle) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (1..API_WORKERS)
                .map(|i| {
                    std::thread::Builder::new()
                        .name(format!("vtpm-host-api-{i}"))
                        .spawn_scoped(scope, move || self.api_worker(listener, stop))
                })
                .collect::<io::Result<_>>()?;
            let mine = self.api_worker(listener, stop);
            // A worker that failed (its epoll set could not be made) stops them all.
            stop.stop();
            workers.into_iter().fold(mine, |acc, w| {
                acc.and(
                    w.join()
                        .unwrap_or_else(|_| Err(io::Error::other("API worker panicked"))),
                )
            })
        })
    }

    fn api_worker(self: &Arc<Self>, listener: &Listener, stop: &StopHandle) -> io::Result<()> {
        use rustix::event::epoll;
        let set = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &set,
            listener,
            epoll::EventData::new_u64(0),
            epoll::EventFlags::IN | epoll::EventFlags::EXCLUSIVE,
        )?;
        // The stop pipe stays readable once written: it wakes every worker.
        epoll::add(
            &set,
            stop.wake_fd(),
            epoll::EventData::new_u64(1),
            epoll::EventFlags::IN,
        )?;
        let mut events = Vec::with_capacity(2);
        while !stop.is_stopped() {
            events.clear();
            match epoll::wait(&set, rustix::buffer::spare_capacity(&mut events), None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if stop.is_stopped() {
                break;
            }
            match listener.accept() {
                Ok(stream) => self.handle_connection(stream),
                // Another worker took it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off a little rather than spin.
                    self.log.warn(format_args!("API: accept: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Ok(())
    }

    fn handle_connection(self: &Arc<Self>, mut s: Stream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(REQUEST_DEADLINE));
        let _ = s.set_write_timeout(Some(REQUEST_DEADLINE));
        let (status, body) = match read_request(&mut s) {
            Ok(req) => match self.route(&req) {
                Ok((status, v)) => (status, v),
                Err(e) => (e.status, json!({ "error": e.message })),
            },
            Err(e) => {
                // Unread input makes the close a reset that can destroy the answer before
                // the client reads it: discard what is pending (bounded), then answer.
                let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                let mut sink = [0u8; 4096];
                let mut left = 256 * 1024usize;
                while left > 0 {
                    match s.read(&mut sink) {
                        Ok(n) if n > 0 => left = left.saturating_sub(n),
                        _ => break,
                    }
                }
                (e.status, json!({ "error": e.message }))
            }
        };
        let body = format!("{body}\n");
        let reason = reason(status);
        // Head and body in one write: each write can wake the client once more.
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(answer.as_bytes());
        let _ = s.flush();
        s.shutdown();
        if status == 201 {
            self.created();
        }
    }

    fn route(self: &Arc<Self>, req: &Request) -> Result<(u16, Value), ApiError> {
        let path = req.path.split('?').next().unwrap_or("");
        let method = req.method.as_str();
        match path {
            "/v1/host" => match method {
                "GET" => Ok((200, self.host_info())),
                _ => Err(err(405, format!("{method} {path}: use GET"))),
            },
            "/v1/instances" | "/v1/instances/" => match method {
                "GET" => Ok((200, self.list())),
                "POST" => {
                    let (name, opts) = parse_create(&req.body)?;
                    self.create_and_start(&name, &opts).map(|v| (201, v))
                }
                _ => Err(err(405, format!("{method} {path}: use GET or POST"))),
            },
            _ => {
                let Some(name) = path.strip_prefix("/v1/instances/") else {
                    return Err(err(404, format!("no such resource: {path}")));
                };
                match method {
                    "GET" => self.show(name).map(|v| (200, v)),
                    "DELETE" => self.delete(name).map(|v| (200, v)),
                    _ => Err(err(405, format!("{method} {path}: use GET or DELETE"))),
                }
            }
        }
    }
}

/// Write `instance.json`: overwritten, then cut to length, rather than truncated first
/// (ext4 flushes a file truncated to zero when it is closed, a disk write on the create
/// path for a file nothing reads until the next start).
fn write_config(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.set_len(bytes.len() as u64)
}

/// What the housekeeping thread does next.
enum Chore {
    Park,
    Spare,
}

/// The housekeeping thread's loop: once creates have paused for [`QUIET`] (at once when a
/// burst used up every spare), start parked threads and make spares, one at a time, until
/// [`PARKED`] threads wait and as many spares as wanted are ready; until the host stops or
/// is dropped.
fn housekeeping_loop(host: std::sync::Weak<Host>) {
    loop {
        let Some(host) = host.upgrade() else { return };
        let parked_short = lock(&host.parked).len() < PARKED;
        let chore = {
            let mut spares = lock(&host.spares);
            if spares.stopped {
                return;
            }
            let since = spares.last_create.map(|t| t.elapsed());
            let wait = match since {
                // A burst that used up every spare: make more at once.
                Some(since) if since < QUIET && !spares.ready.is_empty() => QUIET - since,
                _ if parked_short => Duration::ZERO,
                _ if spares.ready.len() < spares.wanted => Duration::ZERO,
                // Woken by a create or a stop; the timeout only notices a dropped host.
                _ => {
                    spares.idle = true;
                    Duration::from_secs(1)
                }
            };
            if !wait.is_zero() {
                let _ = host.spares_changed.wait_timeout(spares, wait);
                continue;
            }
            if parked_short {
                Chore::Park
            } else {
                Chore::Spare
            }
        };
        match chore {
            Chore::Park => match park_thread() {
                Ok(p) => lock(&host.parked).push(p),
                Err(e) => {
                    host.log
                        .warn(format_args!("cannot start a thread ahead of creates: {e}"));
                    drop(host);
                    std::thread::sleep(Duration::from_secs(1));
                }
            },
            Chore::Spare => match host.make_spare() {
                Ok(spare) => {
                    let mut spares = lock(&host.spares);
                    if spares.stopped {
                        drop(spares);
                        remove_spare(spare);
                        return;
                    }
                    spares.ready.push(spare);
                }
                Err(e) => {
                    host.log
                        .error(format_args!("cannot prepare an instance directory: {e}"));
                    drop(host);
                    std::thread::sleep(Duration::from_secs(1));
                }
            },
        }
    }
}

/// Rename `from` to `to` unless `to` exists (one system call where the file system has
/// renameat2's RENAME_NOREPLACE, else a check then a rename).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if to.symlink_metadata().is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        r => r.map_err(io::Error::from),
    }
}

/// A name that is already taken (a directory in the way may also say "not empty").
fn is_exists(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AlreadyExists
        || e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
}

fn remove_spare(spare: Spare) {
    let Spare { dir, prepared } = spare;
    drop(prepared);
    let _ = fs::remove_dir_all(dir);
}

fn stop_instance(mut r: Running) {
    r.stop.stop();
    if let Some(t) = r.thread.take() {
        let _ = t.join();
    }
}

fn parse_create(body: &[u8]) -> Result<(String, CreateOptions), ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| err(400, format!("the request body is not valid JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(err(400, "the request body must be a JSON object"));
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "name" | "tcp" | "ek_cert") {
            return Err(err(
                400,
                format!("unknown field {k:?} (fields: name, tcp, ek_cert)"),
            ));
        }
    }
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(err(400, "\"name\" must be a string")),
        None => return Err(err(400, "missing field \"name\"")),
    };
    let flag = |k: &str| -> Result<Option<bool>, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(err(400, format!("{k:?} must be true or false"))),
        }
    };
    Ok((
        name,
        CreateOptions {
            tcp: flag("tcp")?.unwrap_or(false),
            ek_cert: flag("ek_cert")?,
        },
    ))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(s: &mut impl Read) -> Result<Request, ApiError> {
    let started = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(err(
                431,
                format!("request head larger than {MAX_HEAD} bytes"),
            ));
        }
        if started.elapsed() > REQUEST_DEADLINE {
            return Err(err(408, "request not complete in time"));
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                return Err(err(
                    400,
                    "connection closed before the end of the request head",
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(err(408, "request not complete in time")),
        }
    };
    if head_end > MAX_HEAD {
        return Err(err(
            431,
            format!("request head larger than {MAX_HEAD} bytes"),
        ));
    }
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| err(400, "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err(400, format!("malformed request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(err(
            400,
            format!("unsupported protocol {version:?}: use HTTP/1.1"),
        ));
    }
    let mut length: Option<usize> = None;
    for h in lines {
        let Some((k, v)) = h.split_once(':') else {
            return Err(err(400, format!("malformed header {h:?}")));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse()
                    .map_err(|_| err(400, format!("bad Content-Length {v:?}")))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err(err(
                501,
                "Transfer-Encoding is not supported: send Content-Length",
            ));
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(err(
            413,
            format!("request body of {length} bytes: at most {MAX_BODY}"),
        ));
    }
    if method == "POST" && length == 0 {
        return Err(err(411, "POST needs a JSON body with Content-Length"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        if started.elapsed() > REQUEST_DEADLINE {
            return Err(err(408, "request body not complete in time"));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err(err(400, "connection closed before the end of the body")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(err(408, "request body not complete in time")),
        }
    }
    body.truncate(length);
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        body,
    })
}

/// Bind the API socket (`DIR/host.sock`, mode 0600). Refused if a host already answers
/// there.
pub fn bind_api(dir: &Path) -> io::Result<Listener> {
    let path = dir.join(API_SOCKET);
    if UnixStream::connect(&path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a vTPM host is already serving {}", path.display()),
        ));
    }
    let l = Listener::bind(&Endpoint::Unix {
        path: path.clone(),
        mode: Some(0o600),
        uid: None,
        gid: None,
    })?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Raise the soft open-file limit to the hard limit (each instance holds a few descriptors).
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

/// An HTTP answer: up to the end of its body when the head gives a `Content-Length` (the
/// host's always do: the close that follows need not be waited for), else to the end of
/// the stream.
fn read_answer(s: &mut impl Read) -> io::Result<Vec<u8>> {
    const MAX: usize = 16 << 20;
    let mut out = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut want = None;
    loop {
        if want.is_none() {
            if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..i]);
                let length = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                // A length past what fits reads to the end (within MAX) instead of overflowing.
                want = Some(length.and_then(|n| (i + 4).checked_add(n)));
            }
        }
        if let Some(Some(total)) = want {
            if out.len() >= total {
                out.truncate(total);
                return Ok(out);
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > MAX {
            return Err(io::Error::other("the vTPM host's answer is too long"));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// A client of the management API: one request, the status and the JSON answer.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> io::Result<(u16, Value)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let out = read_answer(&mut s)?;
    let text = String::from_utf8_lossy(&out);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("malformed answer from the vTPM host"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("malformed status line from the vTPM host"))?;
    let v = serde_json::from_str(rest.trim()).unwrap_or(Value::Null);
    Ok((status, v))
}

#[cfg(test)]
mod tests {
    use super::read_answer;

    #[test]
    fn an_answer_ends_at_its_content_length_or_at_the_end_of_the_stream() {
        let with_length = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\n{}\nNOT READ";
        assert_eq!(
            read_answer(&mut &with_length[..]).expect("read"),
            b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\n{}\n"
        );
        let without = b"HTTP/1.1 200 OK\r\n\r\n{\"a\":1}";
        assert_eq!(read_answer(&mut &without[..]).expect("read"), without);
        // A length that does not fit in usize, or is not a number: read to the end.
        for length in ["18446744073709551615", "99999999999999999999999", "x"] {
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n{{}}");
            assert_eq!(
                read_answer(&mut answer.as_bytes()).expect("read"),
                answer.as_bytes()
            );
        }
        // Cut short: what arrived.
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        assert_eq!(read_answer(&mut &short[..]).expect("read"), short);
        // Longer than 16 MiB: an error, not a growing buffer.
        let mut huge = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        huge.resize(17 << 20, b' ');
        assert!(read_answer(&mut &huge[..]).is_err());
    }
}
