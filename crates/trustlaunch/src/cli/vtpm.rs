//! `trustlaunch vtpm socket|mssim`: serve one vTPM over swtpm's socket protocol (taking
//! swtpm's own `socket` arguments) or over the Microsoft simulator protocol.
//! `trustlaunch vtpm ca export`: print the manufacturer CA certificate.
//! `trustlaunch vtpm setup`: `swtpm_setup`'s provisioning of a new state directory.
//!
//! The same parsers serve the drop-in executables `swtpm` ([`swtpm_main`]: `swtpm socket
//! ARGS` is `trustlaunch vtpm socket ARGS`) and `swtpm_setup` ([`swtpm_setup_main`]: the
//! arguments of `trustlaunch vtpm setup`), so QEMU, libvirt and test harnesses that run
//! swtpm run this TPM unchanged.
//!
//! A TPM manufactured in a new state directory is endorsed as real TPMs are: RSA-2048
//! and ECC P-256 EK certificates, issued by the host's vTPM manufacturer CA, in NV at
//! 0x01C00002 and 0x01C0000A (`--no-ek-cert` leaves it bare). The CA lives in
//! `--ca-dir`, by default `/var/lib/trustlaunch/vtpm-ca` for root and
//! `${XDG_DATA_HOME:-~/.local/share}/trustlaunch/vtpm-ca` for other users, and is
//! created on first use.
//!
//! Startup order, as swtpm: validate every option, open and lock the state directory
//! (restoring or manufacturing the TPM), bind every socket, then write the pid file:
//! once the pid file exists, the sockets accept connections. SIGTERM and SIGINT save
//! the state and exit 0.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use vtpm::options::{self, LogOption, PidOption, SeccompAction};
use vtpm::provision::{self, SetupOptions};
use vtpm::setup::{open_log, PidFile};
use vtpm::{Endorsement, Endpoint, Instance, Listener, Log, ManufacturerCa, StateDir, StopHandle};

// `vtpm host` and its API clients (also compiled into the swtpm drop-ins, which include
// this file by path).
#[path = "vtpm_host.rs"]
pub mod host_cli;

#[derive(Debug, Subcommand)]
pub enum VtpmCommand {
    /// Serve a vTPM over swtpm's socket protocol; accepts `swtpm socket` arguments.
    Socket(Box<SocketArgs>),
    /// Serve a vTPM over the Microsoft TPM 2.0 simulator protocol (ports N and N+1).
    Mssim(MssimArgs),
    /// The vTPM manufacturer CA that issues the instances' EK certificates.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Provision a new state directory as swtpm_setup does; accepts `swtpm_setup` arguments.
    Setup(Box<SetupArgs>),
    /// Serve many vTPMs from one process, managed through `vtpm create|delete|list|show`.
    Host(host_cli::HostArgs),
    /// Create a vTPM instance in the running host.
    Create(host_cli::CreateArgs),
    /// Delete a vTPM instance (and its state) from the running host.
    Delete(host_cli::NameArgs),
    /// List the running host's vTPM instances.
    List(host_cli::ListArgs),
    /// Show one vTPM instance of the running host.
    Show(host_cli::NameArgs),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the CA certificate (PEM) for verifiers to trust; creates the CA if needed.
    Export(CaDirArg),
}

/// Where the manufacturer CA is kept.
#[derive(Debug, Args)]
pub struct CaDirArg {
    /// The manufacturer CA's directory [default: /var/lib/trustlaunch/vtpm-ca as root,
    /// else $XDG_DATA_HOME or ~/.local/share, then trustlaunch/vtpm-ca].
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
}

/// Endorsement of a TPM manufactured in a new state directory.
#[derive(Debug, Args)]
pub struct EndorsementArgs {
    #[command(flatten)]
    ca: CaDirArg,
    /// Manufacture new TPMs without EKs or EK certificates (faster start; a bare TPM
    /// as swtpm without swtpm_setup).
    #[arg(long, conflicts_with = "ca_dir")]
    no_ek_cert: bool,
}

/// The subset of `swtpm socket` options this server implements, with swtpm's syntax.
#[derive(Debug, Args)]
pub struct SocketArgs {
    /// Emulate a TPM 2.0 (required: TPM 1.2 is not implemented).
    #[arg(long)]
    tpm2: bool,
    /// Print the swtpm features this server implements (JSON) and exit.
    #[arg(long, alias = "print-capabilites")]
    print_capabilities: bool,
    /// Data channel on TCP port PORT (swtpm's older form of --server type=tcp,port=PORT).
    #[arg(short = 'p', long, value_name = "PORT", conflicts_with = "server")]
    port: Option<u16>,
    /// Not supported: a data channel passed in as a file descriptor (QEMU passes one with
    /// CMD_SET_DATAFD over --ctrl instead).
    #[arg(short = 'f', long, value_name = "FD")]
    fd: Option<i32>,
    /// End the server once the data connection (or the CMD_SET_DATAFD channel) closes.
    #[arg(short = 't', long)]
    terminate: bool,
    /// Accepted only for the user the server already runs as (it never changes user).
    #[arg(short = 'r', long, value_name = "USER")]
    runas: Option<String>,
    #[command(flatten)]
    state: StateKeyArgs,
    /// Not supported: state blob encryption for migration.
    #[arg(long, value_name = "OPTIONS")]
    migration_key: Option<String>,
    /// Data channel: [type=tcp][,port=N][,bindaddr=A][,disconnect] or
    /// type=unixio,path=P[,mode=0770][,uid=U][,gid=G].
    #[arg(long, value_name = "OPTIONS")]
    server: Option<String>,
    /// Control channel: type=tcp,port=N[,bindaddr=A] or
    /// type=unixio,path=P[,mode=0770][,uid=U][,gid=G].
    #[arg(long, value_name = "OPTIONS")]
    ctrl: Option<String>,
    /// State directory: dir=D[,mode=0640] (or backend-uri=dir://D); default: the
    /// TPM_PATH environment variable.
    #[arg(long, value_name = "OPTIONS")]
    tpmstate: Option<String>,
    /// [not-need-init][,startup-clear|startup-state|startup-none].
    #[arg(long, value_name = "OPTIONS")]
    flags: Option<String>,
    /// file=PATH|fd=N[,level=N][,prefix=S][,truncate]; file=- disables logging.
    /// Without --log, errors go to stderr.
    #[arg(long, value_name = "OPTIONS")]
    log: Option<String>,
    /// file=PATH|fd=N: written once all sockets are bound.
    #[arg(long, value_name = "OPTIONS")]
    pid: Option<String>,
    /// [reject-locality-4]: refuse CMD_SET_LOCALITY to locality 4.
    #[arg(long, value_name = "OPTIONS")]
    locality: Option<String>,
    /// action=none|kill|log: accepted for compatibility and ignored (no seccomp
    /// profile is installed).
    #[arg(long, value_name = "OPTIONS")]
    seccomp: Option<String>,
    /// Detach: return once the sockets are bound, leaving the server running.
    #[arg(short = 'd', long)]
    daemon: bool,
    #[command(flatten)]
    endorsement: EndorsementArgs,
}

#[derive(Debug, Args)]
pub struct MssimArgs {
    /// Command port; the platform port is PORT+1.
    #[arg(long, default_value_t = 2321)]
    port: u16,
    /// Address to bind both ports to.
    #[arg(long, default_value = "127.0.0.1")]
    bindaddr: String,
    /// State directory: dir=D[,mode=0640].
    #[arg(long, value_name = "OPTIONS")]
    tpmstate: String,
    /// file=PATH|fd=N: written once both ports are bound.
    #[arg(long, value_name = "OPTIONS")]
    pid: Option<String>,
    /// file=PATH|fd=N[,level=N][,prefix=S][,truncate]; file=- disables logging.
    #[arg(long, value_name = "OPTIONS")]
    log: Option<String>,
    #[command(flatten)]
    state: StateKeyArgs,
    #[command(flatten)]
    endorsement: EndorsementArgs,
}

/// Encryption of the state at rest, and recovery from a state file that does not load.
#[derive(Debug, Args)]
pub struct StateKeyArgs {
    /// Encrypt the state at rest (AES-256-GCM, integrity-protected):
    /// file=PATH[,format=hex|binary][,mode=aes-256-gcm][,remove=true|false]. PATH holds
    /// the 256-bit key as 32 raw bytes or 64 hex digits and must be mode 0600 or
    /// stricter. An encrypted state does not start without its key. The state blobs
    /// of snapshots and migration are not encrypted.
    #[arg(long, value_name = "OPTIONS")]
    key: Option<String>,
    /// With --key: accept an existing plaintext state and encrypt it at once (without
    /// this, a plaintext state under --key is refused, so that a forged plaintext file
    /// cannot replace an encrypted one).
    #[arg(long)]
    encrypt_existing_state: bool,
    /// Recover from a state file that does not load (corrupt, truncated, or missing):
    /// move it aside as tpm2-state.bin.bad and start from tpm2-state.bin.prev, the
    /// state before the last save (NV writes of that last save are lost). Does nothing
    /// if the state file loads. By hand: stop the server, then
    /// `mv tpm2-state.bin tpm2-state.bin.bad && cp -p tpm2-state.bin.prev tpm2-state.bin`.
    #[arg(long)]
    restore_previous: bool,
}

impl StateKeyArgs {
    /// Validate the options without reading the key file.
    fn check(&self) -> anyhow::Result<()> {
        if self.encrypt_existing_state && self.key.is_none() {
            bail!("--encrypt-existing-state needs --key");
        }
        if let Some(value) = self.key.as_deref() {
            vtpm::key::parse_key_option(value)?;
        }
        Ok(())
    }

    /// Validate the options and read the key file.
    fn key_provider(&self) -> anyhow::Result<Option<vtpm::key::FileKeyProvider>> {
        self.check()?;
        let Some(value) = self.key.as_deref() else {
            return Ok(None);
        };
        let opt = vtpm::key::parse_key_option(value)?;
        Ok(Some(vtpm::key::FileKeyProvider::from_option(&opt)?))
    }

    /// Open and lock the state directory with the key, restoring `.prev` if asked.
    fn open(
        &self,
        key: Option<&vtpm::key::FileKeyProvider>,
        tpmstate: &options::TpmStateOption,
        log: &Log,
    ) -> anyhow::Result<StateDir> {
        let mut dir = StateDir::open(&tpmstate.dir)?
            .with_file_mode(tpmstate.mode)
            .allow_plaintext_upgrade(self.encrypt_existing_state);
        if let Some(key) = key {
            dir = dir.with_key(key)?;
        }
        if self.restore_previous {
            if dir.restore_previous()? {
                log.warn(format_args!(
                    "--restore-previous: {} did not load; moved it to {} and restored {}",
                    dir.state_file().display(),
                    vtpm::state::BAD_FILE,
                    dir.prev_file().display()
                ));
            } else {
                log.info("--restore-previous: the state file loads; nothing restored");
            }
        }
        Ok(dir)
    }
}

pub fn run(cmd: VtpmCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VtpmCommand::Socket(a) => run_socket(*a),
        VtpmCommand::Mssim(a) => run_mssim(a),
        VtpmCommand::Ca(CaCommand::Export(a)) => run_ca_export(a),
        VtpmCommand::Setup(a) => run_setup(*a),
        VtpmCommand::Host(a) => host_cli::run_host(a),
        VtpmCommand::Create(a) => host_cli::run_create(a),
        VtpmCommand::Delete(a) => host_cli::run_delete(a),
        VtpmCommand::List(a) => host_cli::run_list(a),
        VtpmCommand::Show(a) => host_cli::run_show(a),
    }
}

impl CaDirArg {
    /// `--ca-dir`, or the default for this user.
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.ca_dir {
            return Ok(dir.clone());
        }
        let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        vtpm::ca::default_dir(vtpm::ca::running_as_root(), xdg.as_deref(), home.as_deref())
            .context("no default CA directory (HOME is not set): give --ca-dir DIR")
    }
}

impl EndorsementArgs {
    /// What the CLI asked for, resolved once: the CA itself is only loaded (or created)
    /// if a new TPM is manufactured.
    fn resolve(&self) -> anyhow::Result<Endorsement> {
        if self.no_ek_cert {
            return Ok(Endorsement::None);
        }
        Ok(Endorsement::CaDir(self.ca.resolve()?))
    }
}

fn load_ca(dir: &Path) -> anyhow::Result<ManufacturerCa> {
    ManufacturerCa::load_or_create(dir)
        .with_context(|| format!("manufacturer CA in {}", dir.display()))
}

fn run_ca_export(a: CaDirArg) -> anyhow::Result<ExitCode> {
    let ca = load_ca(&a.resolve()?)?;
    let mut out = std::io::stdout().lock();
    out.write_all(ca.certificate_pem().as_bytes())
        .and_then(|()| out.flush())
        .context("writing the certificate to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Set in the environment of the detached child of `--daemon`.
const DAEMON_ENV: &str = "TRUSTLAUNCH_VTPM_DAEMON_CHILD";
/// The line the detached child prints once it is serving.
const DAEMON_READY: &str = "trustlaunch-vtpm-ready";

fn run_socket(a: SocketArgs) -> anyhow::Result<ExitCode> {
    if a.print_capabilities {
        println!("{}", capabilities_json("swtpm", SWTPM_FEATURES));
        return Ok(ExitCode::SUCCESS);
    }
    if !a.tpm2 {
        bail!("--tpm2 is required: only TPM 2.0 is implemented");
    }
    if a.fd.is_some() {
        bail!(
            "--fd: a data channel passed in as a file descriptor is not supported; use \
             --server, or --ctrl and pass the data channel with CMD_SET_DATAFD (as QEMU does)"
        );
    }
    if a.migration_key.is_some() {
        bail!(
            "--migration-key: encrypting state blobs for migration is not supported (state \
             blobs are sent unencrypted; --key encrypts the state at rest); remove the option"
        );
    }
    // Checked now; the key file is read after --daemon detaches (remove=true deletes it).
    a.state.check()?;
    if let Some(user) = &a.runas {
        check_runas(user)?;
    }
    let server = match (a.server.as_deref(), a.port) {
        (Some(s), _) => Some(options::parse_server(s)?),
        (None, Some(port)) => Some(options::parse_server(&format!("type=tcp,port={port}"))?),
        (None, None) => None,
    };
    let ctrl = a.ctrl.as_deref().map(options::parse_ctrl).transpose()?;
    let tpmstate = match (a.tpmstate.as_deref(), std::env::var("TPM_PATH")) {
        (Some(s), _) => options::parse_tpmstate(s)?,
        (None, Ok(dir)) if !dir.is_empty() => options::parse_tpmstate(&format!("dir={dir}"))
            .context("the TPM_PATH environment variable")?,
        (None, _) => bail!("--tpmstate dir=D is required"),
    };
    refuse_foreign_state(&tpmstate.dir)?;
    let flags = a
        .flags
        .as_deref()
        .map(options::parse_flags)
        .transpose()?
        .unwrap_or_default();
    let log_opt = a.log.as_deref().map(options::parse_log).transpose()?;
    let pid = a.pid.as_deref().map(options::parse_pid).transpose()?;
    let locality = a
        .locality
        .as_deref()
        .map(options::parse_locality)
        .transpose()?
        .unwrap_or_default();
    let seccomp = a
        .seccomp
        .as_deref()
        .map(options::parse_seccomp)
        .transpose()?;
    let endorsement = a.endorsement.resolve()?;
    if server.is_none() && ctrl.is_none() {
        bail!("give --server, --ctrl or both: without them nothing can reach the TPM");
    }
    if let (Some(s), Some(c)) = (&server, &ctrl) {
        if s.endpoint == c.endpoint {
            bail!("--server and --ctrl name the same socket ({})", s.endpoint);
        }
    }
    if a.daemon {
        return daemonize();
    }

    let key = a.state.key_provider()?;
    let log = make_log(log_opt.as_ref())?;
    if let Some(action) = seccomp {
        if action != SeccompAction::None {
            log.info(format_args!(
                "--seccomp action={action:?} ignored: no seccomp profile is installed"
            ));
        }
    }
    let dir = a.state.open(key.as_ref(), &tpmstate, &log)?;
    let instance = Arc::new(Instance::open_with(dir, log.clone(), &endorsement)?);
    let data = match &server {
        Some(s) => Some(bind("--server", &s.endpoint)?),
        None => None,
    };
    let ctrl_l = match &ctrl {
        Some(c) => Some(bind("--ctrl", &c.endpoint)?),
        None => None,
    };
    if flags.not_need_init {
        instance.init()?;
    }
    if let Some(kind) = flags.startup {
        let rc = instance.startup(kind);
        if rc == 0 {
            log.info(format_args!("TPM2_Startup({kind:?}) sent"));
        } else {
            log.warn(format_args!("TPM2_Startup({kind:?}) returned {rc:#x}"));
        }
    }
    let stop = StopHandle::new()?;
    stop_on_signals(&stop, &log)?;
    let _pid = write_pid(pid.as_ref())?;
    signal_daemon_parent();

    let mut config = vtpm::swtpm::SocketConfig::new(data, ctrl_l);
    config.disconnect = server.as_ref().is_some_and(|s| s.disconnect);
    config.reject_locality_4 = locality.reject_locality_4;
    config.terminate = a.terminate;
    vtpm::swtpm::serve(instance, config, stop)?;
    Ok(ExitCode::SUCCESS)
}

fn run_mssim(a: MssimArgs) -> anyhow::Result<ExitCode> {
    let tpmstate = options::parse_tpmstate(&a.tpmstate)?;
    let log_opt = a.log.as_deref().map(options::parse_log).transpose()?;
    let pid = a.pid.as_deref().map(options::parse_pid).transpose()?;
    let addr: IpAddr = {
        let v = a.bindaddr.as_str();
        let v = v
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(v);
        v.parse().map_err(|_| {
            anyhow::anyhow!(
                "--bindaddr: '{}' is not an IPv4 or IPv6 address",
                a.bindaddr
            )
        })?
    };
    if a.port == 0 || a.port == u16::MAX {
        bail!(
            "--port: {} leaves no room for the platform port PORT+1 (use 1-65534)",
            a.port
        );
    }

    let endorsement = a.endorsement.resolve()?;
    let key = a.state.key_provider()?;

    let log = make_log(log_opt.as_ref())?;
    let dir = a.state.open(key.as_ref(), &tpmstate, &log)?;
    let instance = Arc::new(Instance::open_with(dir, log.clone(), &endorsement)?);
    let command = bind("--port", &Endpoint::Tcp { addr, port: a.port })?;
    let platform = bind(
        "--port",
        &Endpoint::Tcp {
            addr,
            port: a.port + 1,
        },
    )?;
    let stop = StopHandle::new()?;
    stop_on_signals(&stop, &log)?;
    let _pid = write_pid(pid.as_ref())?;
    vtpm::mssim::serve(
        instance,
        vtpm::mssim::MssimConfig::new(command, platform),
        stop,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn make_log(opt: Option<&LogOption>) -> anyhow::Result<Log> {
    match opt {
        Some(o) => Ok(open_log(o).context("--log")?),
        None => Ok(Log::stderr(1, None)),
    }
}

fn bind(option: &str, endpoint: &Endpoint) -> anyhow::Result<Listener> {
    Listener::bind(endpoint).with_context(|| format!("{option}: cannot listen on {endpoint}"))
}

fn write_pid(opt: Option<&PidOption>) -> anyhow::Result<Option<PidFile>> {
    opt.map(|p| PidFile::write(p).context("--pid")).transpose()
}

/// SIGTERM / SIGINT: stop serving; `serve` then saves the state and returns.
/// A second signal exits at once, in case stopping hangs.
fn stop_on_signals(stop: &StopHandle, log: &Log) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot install signal handlers")?;
    let stop = stop.clone();
    let log = log.clone();
    std::thread::Builder::new()
        .name("vtpm-signals".into())
        .spawn(move || {
            let mut forever = signals.forever();
            if let Some(sig) = forever.next() {
                log.info(format_args!("signal {sig}: saving state and stopping"));
                stop.stop();
            }
            if let Some(sig) = forever.next() {
                log.error(format_args!("signal {sig} while stopping: exiting now"));
                std::process::exit(1);
            }
        })?;
    Ok(())
}

/// `--daemon`: run this same command again without it, detached in its own process
/// group, and return once the child reports that its sockets are bound (or relay its
/// error and fail). Re-executing keeps the process free of fork-after-threads hazards.
fn daemonize() -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("--daemon: cannot find this executable")?;
    let args: Vec<OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon" && a != "-d")
        .collect();
    let (reader, writer) = std::io::pipe().context("--daemon: pipe")?;
    let mut child = Command::new(exe)
        .args(args)
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(writer.try_clone().context("--daemon: pipe")?)
        .stderr(writer)
        .process_group(0)
        .spawn()
        .context("--daemon: cannot start the server process")?;
    let mut stderr = std::io::stderr();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        if line == DAEMON_READY {
            return Ok(ExitCode::SUCCESS);
        }
        let _ = writeln!(stderr, "{line}");
    }
    let status = child
        .wait()
        .context("--daemon: waiting for the server process")?;
    bail!("the server process exited before it was ready ({status})");
}

/// In the detached child of `--daemon`: tell the parent we are serving. The pipe is
/// the child's stdout and stderr; once the parent has gone, writes to them fail
/// harmlessly (use --log file=... to keep a daemon's log).
fn signal_daemon_parent() {
    if std::env::var_os(DAEMON_ENV).is_some() {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{DAEMON_READY}");
        let _ = out.flush();
    }
}

/// What `swtpm socket --print-capabilities` lists: only features this server implements
/// (swtpm 0.7.1's names). Not listed, so not offered: tpm-1.2, cmdarg-key-fd,
/// cmdarg-pwd-fd (state encryption), cmdarg-print-states, nvram-backend-file.
const SWTPM_FEATURES: &[&str] = &[
    "tpm-2.0",
    "tpm-send-command-header",
    "flags-opt-startup",
    "cmdarg-seccomp",
    "nvram-backend-dir",
];

/// What `swtpm_setup --print-capabilities` lists.
const SWTPM_SETUP_FEATURES: &[&str] = &[
    "tpm-2.0",
    "cmdarg-write-ek-cert-files",
    "cmdarg-reconfigure-pcr-banks",
    "tpm2-rsa-keysize-2048",
];

/// `{ "type": "swtpm", "features": [ ... ], "version": "..." }`, as swtpm prints it.
fn capabilities_json(kind: &str, features: &[&str]) -> String {
    let list: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        "{{ \"type\": \"{kind}\", \"features\": [ {} ], \"version\": \"{}\" }}",
        list.join(", "),
        env!("CARGO_PKG_VERSION")
    )
}

/// `--runas USER`: this server never changes user, so only the user it runs as is
/// accepted (by name or number).
fn check_runas(user: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self")
        .context("--runas: cannot tell which user this process runs as")?
        .uid();
    let uid = match user.parse::<u32>() {
        Ok(uid) => Some(uid),
        Err(_) => std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse::<u32>().ok()?;
                (name == user).then_some(uid)
            })
            .next(),
    };
    if uid != Some(me) {
        bail!(
            "--runas {user}: changing user is not supported; start the server as that user \
             instead (it runs as uid {me})"
        );
    }
    Ok(())
}

/// A state directory with swtpm's (libtpms') state and none of ours would otherwise get
/// a newly manufactured TPM: a different TPM identity under the same VM. Refuse.
fn refuse_foreign_state(dir: &Path) -> anyhow::Result<()> {
    if dir.join(provision::SWTPM_STATE_FILE).exists() && !dir.join(vtpm::state::STATE_FILE).exists()
    {
        bail!(
            "{} holds a TPM state made by swtpm (libtpms), {}, which this TPM cannot read; \
             refusing to put a new TPM in its place (move the directory's contents away to \
             start with a new TPM)",
            dir.display(),
            provision::SWTPM_STATE_FILE
        );
    }
    Ok(())
}

fn version_line(tool: &str) -> String {
    format!(
        "{tool} version {} (trustlaunch vTPM: TPM 2.0 only, swtpm-compatible command line)",
        env!("CARGO_PKG_VERSION")
    )
}

/// `swtpm socket ...` through the drop-in executable.
#[derive(Debug, Parser)]
#[command(
    name = "swtpm socket",
    about = "TPM 2.0 emulator (trustlaunch vTPM) serving swtpm's socket protocol",
    disable_version_flag = true
)]
struct SwtpmSocketCli {
    #[command(flatten)]
    args: SocketArgs,
}

/// `swtpm_setup ...` through the drop-in executable.
#[derive(Debug, Parser)]
#[command(
    name = "swtpm_setup",
    about = "Provision a TPM 2.0 state directory (trustlaunch vTPM)",
    disable_version_flag = true
)]
struct SwtpmSetupCli {
    #[command(flatten)]
    args: SetupArgs,
}

/// The `swtpm` drop-in: `swtpm socket ARGS` runs `trustlaunch vtpm socket ARGS`, except that
/// a new TPM is bare (no EK certificates, as swtpm without swtpm_setup) unless `--ca-dir`
/// is given. `swtpm --version` and `swtpm --help` answer; chardev and cuse are refused.
#[allow(dead_code)] // the entry of src/bin/swtpm.rs, which includes this module
pub fn swtpm_main(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    match first {
        "socket" => {
            if args.iter().skip(2).any(|a| a == "--version" || a == "-v") {
                println!("{}", version_line("TPM emulator"));
                return Ok(ExitCode::SUCCESS);
            }
            let rest = args.iter().skip(2).cloned();
            let cli =
                SwtpmSocketCli::try_parse_from(std::iter::once("swtpm socket".into()).chain(rest))
                    .unwrap_or_else(|e| e.exit());
            let mut a = cli.args;
            if a.endorsement.ca.ca_dir.is_none() {
                a.endorsement.no_ek_cert = true;
            }
            run_socket(a)
        }
        "--version" | "-v" => {
            println!("{}", version_line("TPM emulator"));
            Ok(ExitCode::SUCCESS)
        }
        "--help" | "-h" | "" => {
            println!(
                "{}\n\nUsage: swtpm socket [options]   (swtpm socket --help lists them)\n\n\
                 Only the socket interface is implemented (not chardev or cuse), for TPM 2.0.",
                version_line("TPM emulator")
            );
            Ok(if first.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        "chardev" | "cuse" => bail!(
            "swtpm {first} is not implemented: only `swtpm socket` is (TPM 2.0), which QEMU \
             and libvirt use"
        ),
        other => bail!("unknown interface '{other}': only `swtpm socket` is implemented"),
    }
}

/// The `swtpm_setup` drop-in: the arguments of `trustlaunch vtpm setup`.
#[allow(dead_code)] // the entry of src/bin/swtpm_setup.rs, which includes this module
pub fn swtpm_setup_main(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let cli = SwtpmSetupCli::try_parse_from(
        std::iter::once(OsString::from("swtpm_setup")).chain(args.into_iter().skip(1)),
    )
    .unwrap_or_else(|e| e.exit());
    run_setup(cli.args)
}

/// `swtpm_setup`'s options (TPM 2.0 ones), with its spelling.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Set up a TPM 2.0 (required: TPM 1.2 is not implemented).
    #[arg(long)]
    tpm2: bool,
    /// The state directory (created if missing); a dir:// prefix is allowed.
    #[arg(long, alias = "tpmstate", value_name = "DIR")]
    tpm_state: Option<String>,
    /// Create the EKs (RSA 2048 and ECC NIST P-256) and make them persistent at
    /// 0x81010001 and 0x81010002.
    #[arg(long)]
    createek: bool,
    /// Write EK certificates from the manufacturer CA to NV (0x01C00002, 0x01C0000A).
    #[arg(long)]
    create_ek_cert: bool,
    /// Accepted, but no platform certificate is made (not supported; a warning says so).
    #[arg(long)]
    create_platform_cert: bool,
    /// Lock the certificates' NV indices (they always are: TPMA_NV_WRITEDEFINE, written
    /// and write-locked at provisioning).
    #[arg(long)]
    lock_nvram: bool,
    /// PCR banks to allocate, e.g. sha1,sha256 (all 24 PCRs each); '-' keeps the TPM's
    /// default banks [default: sha256, as swtpm_setup].
    #[arg(long, value_name = "BANKS")]
    pcr_banks: Option<String>,
    /// Replace an existing TPM state.
    #[arg(long, conflicts_with = "not_overwrite")]
    overwrite: bool,
    /// Keep an existing TPM state and exit successfully.
    #[arg(long)]
    not_overwrite: bool,
    /// Change the PCR banks of an existing TPM (with --pcr-banks), keeping everything else.
    #[arg(long)]
    reconfigure: bool,
    /// Print what was provisioned.
    #[arg(long)]
    display: bool,
    /// Print the swtpm_setup features implemented (JSON) and exit.
    #[arg(long)]
    print_capabilities: bool,
    /// Write the EK certificates (DER) into this directory as ek-rsa2048.crt and
    /// ek-secp256r1.crt.
    #[arg(long, value_name = "DIR")]
    write_ek_cert_files: Option<PathBuf>,
    /// Append progress messages to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    logfile: Option<PathBuf>,
    /// The VM this TPM belongs to (logged).
    #[arg(long, value_name = "ID")]
    vmid: Option<String>,
    /// Accepted and not read: this tool needs no configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Accepted and ignored: no TPM executable is run.
    #[arg(long, value_name = "EXECUTABLE")]
    tpm: Option<String>,
    /// Accepted and ignored (deprecated in swtpm_setup too).
    #[arg(long, value_name = "EXECUTABLE")]
    swtpm_ioctl: Option<String>,
    /// Accepted and ignored (deprecated in swtpm_setup too).
    #[arg(long, value_name = "FILE")]
    tcsd_system_ps_file: Option<String>,
    /// Accepted only for the user this tool already runs as.
    #[arg(long, value_name = "USER")]
    runas: Option<String>,
    /// EK RSA key size: only 2048 is supported.
    #[arg(long, value_name = "BITS")]
    rsa_keysize: Option<u32>,
    /// EKs for key encipherment: the default, and the only kind made.
    #[arg(long)]
    decryption: bool,
    /// Print the version and exit.
    #[arg(long)]
    version: bool,
    /// Not supported (refused): a storage primary key.
    #[arg(long)]
    create_spk: bool,
    /// Not supported (refused): ECC storage primary key (needs --create-spk).
    #[arg(long)]
    ecc: bool,
    /// Not supported (refused): EKs that can sign.
    #[arg(long)]
    allow_signing: bool,
    /// Not supported (refused): TPM 1.2 only.
    #[arg(long)]
    take_ownership: bool,
    /// Not supported (refused): state encryption.
    #[arg(long, value_name = "FILE")]
    keyfile: Option<String>,
    /// Not supported (refused): state encryption.
    #[arg(long, value_name = "FD")]
    keyfile_fd: Option<String>,
    /// Not supported (refused): state encryption.
    #[arg(long, value_name = "FILE")]
    pwdfile: Option<String>,
    /// Not supported (refused): state encryption.
    #[arg(long, value_name = "FD")]
    pwdfile_fd: Option<String>,
    /// Not supported (refused): state encryption.
    #[arg(long, value_name = "CIPHER")]
    cipher: Option<String>,
    /// Nothing to create: this tool reads no configuration files.
    #[arg(long, value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "")]
    create_config_files: Option<String>,
    #[command(flatten)]
    ca: CaDirArg,
}

fn run_setup(a: SetupArgs) -> anyhow::Result<ExitCode> {
    if a.version {
        println!("{}", version_line("TPM emulator setup tool"));
        return Ok(ExitCode::SUCCESS);
    }
    if a.print_capabilities {
        println!("{}", capabilities_json("swtpm_setup", SWTPM_SETUP_FEATURES));
        return Ok(ExitCode::SUCCESS);
    }
    if a.create_config_files.is_some() {
        println!("swtpm_setup (trustlaunch) reads no configuration files: none created");
        return Ok(ExitCode::SUCCESS);
    }
    if !a.tpm2 {
        bail!("--tpm2 is required: only TPM 2.0 is implemented");
    }
    let refused: &[(bool, &str, &str)] = &[
        (
            a.create_spk,
            "--create-spk",
            "storage primary keys are not provisioned",
        ),
        (a.ecc, "--ecc", "storage primary keys are not provisioned"),
        (
            a.allow_signing,
            "--allow-signing",
            "only decryption EKs (the TCG templates) are made",
        ),
        (a.take_ownership, "--take-ownership", "TPM 1.2 only"),
        (
            a.keyfile.is_some()
                || a.keyfile_fd.is_some()
                || a.pwdfile.is_some()
                || a.pwdfile_fd.is_some()
                || a.cipher.is_some(),
            "--keyfile/--pwdfile/--cipher",
            "encrypting the TPM state is not supported",
        ),
    ];
    if let Some((_, option, why)) = refused.iter().find(|(given, _, _)| *given) {
        bail!("{option} is not supported: {why}");
    }
    if let Some(bits) = a.rsa_keysize {
        if bits != 2048 {
            bail!("--rsa-keysize {bits}: only 2048-bit RSA EKs are supported");
        }
    }
    if let Some(user) = &a.runas {
        check_runas(user)?;
    }
    let Some(state) = a.tpm_state.as_deref() else {
        bail!("--tpm-state DIR is required");
    };
    let dir = match state.strip_prefix("dir://") {
        Some(d) => PathBuf::from(d),
        None if state.contains("://") => {
            bail!("--tpm-state {state}: only directories (DIR or dir://DIR) are supported")
        }
        None => PathBuf::from(state),
    };
    let banks = match a.pcr_banks.as_deref() {
        Some(s) => {
            provision::parse_pcr_banks(s).map_err(|e| anyhow::anyhow!("--pcr-banks {s}: {e}"))?
        }
        None if a.reconfigure => {
            bail!("--reconfigure changes the PCR banks of an existing TPM: give --pcr-banks")
        }
        None => Some(vec![tpm::hash::HashAlg::Sha256]),
    };

    let log = match &a.logfile {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--logfile {}", path.display()))?;
            Log::file(f, vtpm::log::level::INFO, None)
        }
        None => Log::stderr(vtpm::log::level::INFO, None),
    };
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    }
    let sd = StateDir::open(&dir)?;
    let exists = sd.state_file().exists() || dir.join(provision::SWTPM_STATE_FILE).exists();

    if a.reconfigure {
        if a.createek || a.create_ek_cert || a.create_platform_cert || a.overwrite {
            bail!("--reconfigure only changes PCR banks: it cannot be combined with --createek, --create-ek-cert, --create-platform-cert or --overwrite");
        }
        refuse_foreign_state(&dir)?;
        let Some(banks) = banks else {
            log.info("--pcr-banks -: nothing to reconfigure");
            return Ok(ExitCode::SUCCESS);
        };
        provision::reconfigure_pcr_banks(&sd, &banks, &log)?;
        return Ok(ExitCode::SUCCESS);
    }
    if exists {
        if a.not_overwrite {
            log.info(format_args!(
                "Not overwriting existing state file in {}.",
                dir.display()
            ));
            return Ok(ExitCode::SUCCESS);
        }
        if !a.overwrite {
            bail!(
                "{} already holds a TPM state: give --overwrite to replace it, or \
                 --not-overwrite to keep it",
                dir.display()
            );
        }
    }

    log.info(format_args!(
        "Starting vTPM manufacturing in {}{}",
        dir.display(),
        a.vmid
            .as_deref()
            .map(|v| format!(" for {v}"))
            .unwrap_or_default()
    ));
    let endorsement = if a.create_ek_cert || a.create_platform_cert {
        Endorsement::CaDir(a.ca.resolve()?)
    } else {
        Endorsement::None
    };
    let opts = SetupOptions {
        endorsement,
        persist_eks: a.createek || a.create_ek_cert || a.create_platform_cert,
        pcr_banks: banks,
    };
    let report = provision::manufacture(&sd, &opts, &log)?;
    if a.create_platform_cert {
        log.warn(
            "--create-platform-cert: platform certificates are not supported; none was \
             created (the EK certificates were)",
        );
    }
    if let Some(out) = &a.write_ek_cert_files {
        for (kind, _, der) in &report.ek_certificates {
            let name = match kind {
                vtpm::endorsement::EkKind::Rsa2048 => "ek-rsa2048.crt",
                vtpm::endorsement::EkKind::EccP256 => "ek-secp256r1.crt",
            };
            let path = out.join(name);
            std::fs::write(&path, der)
                .with_context(|| format!("--write-ek-cert-files: {}", path.display()))?;
        }
    }
    if !exists || a.overwrite {
        // swtpm's state, if any, has been replaced by ours.
        let foreign = dir.join(provision::SWTPM_STATE_FILE);
        if foreign.exists() {
            log.info(format_args!(
                "{} (swtpm's state) is left in place but no longer used",
                foreign.display()
            ));
        }
    }
    log.info("Successfully authored TPM state.");
    if a.display {
        print_setup_report(&dir, &report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_setup_report(dir: &Path, report: &provision::SetupReport) {
    println!("TPM state: {}", dir.join(vtpm::state::STATE_FILE).display());
    if report.ek_certificates.is_empty() {
        println!("EK certificates: none");
    }
    for (kind, index, der) in &report.ek_certificates {
        println!(
            "EK certificate: {} at NV index {index:#010x} ({} bytes)",
            provision::kind_name(*kind),
            der.len()
        );
    }
    if let Some(issuer) = &report.issuer {
        println!("EK certificate issuer: {issuer}");
    }
    for (kind, handle) in &report.persistent_eks {
        println!(
            "Persistent EK: {} at handle {handle:#010x}",
            provision::kind_name(*kind)
        );
    }
    println!("PCR banks: {}", provision::names(&report.pcr_banks));
}
