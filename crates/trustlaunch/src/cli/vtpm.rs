//! `trustlaunch vtpm socket|mssim`: serve one vTPM over swtpm's socket protocol (taking
//! swtpm's own `socket` arguments) or over the Microsoft simulator protocol.
//! `trustlaunch vtpm ca export`: print the manufacturer CA certificate.
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
use clap::{Args, Subcommand};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use vtpm::options::{self, LogOption, PidOption, SeccompAction};
use vtpm::setup::{open_log, PidFile};
use vtpm::{Endorsement, Endpoint, Instance, Listener, Log, ManufacturerCa, StateDir, StopHandle};

#[derive(Debug, Subcommand)]
pub enum VtpmCommand {
    /// Serve a vTPM over swtpm's socket protocol; accepts `swtpm socket` arguments.
    Socket(SocketArgs),
    /// Serve a vTPM over the Microsoft TPM 2.0 simulator protocol (ports N and N+1).
    Mssim(MssimArgs),
    /// The vTPM manufacturer CA that issues the instances' EK certificates.
    #[command(subcommand)]
    Ca(CaCommand),
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
    /// Data channel: [type=tcp][,port=N][,bindaddr=A][,disconnect] or
    /// type=unixio,path=P[,mode=0770][,uid=U][,gid=G].
    #[arg(long, value_name = "OPTIONS")]
    server: Option<String>,
    /// Control channel: type=tcp,port=N[,bindaddr=A] or
    /// type=unixio,path=P[,mode=0770][,uid=U][,gid=G].
    #[arg(long, value_name = "OPTIONS")]
    ctrl: Option<String>,
    /// State directory: dir=D[,mode=0640] (or backend-uri=dir://D).
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
    endorsement: EndorsementArgs,
}

pub fn run(cmd: VtpmCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VtpmCommand::Socket(a) => run_socket(a),
        VtpmCommand::Mssim(a) => run_mssim(a),
        VtpmCommand::Ca(CaCommand::Export(a)) => run_ca_export(a),
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
    if !a.tpm2 {
        bail!("--tpm2 is required: only TPM 2.0 is implemented");
    }
    let server = a.server.as_deref().map(options::parse_server).transpose()?;
    let ctrl = a.ctrl.as_deref().map(options::parse_ctrl).transpose()?;
    let tpmstate = match a.tpmstate.as_deref() {
        Some(s) => options::parse_tpmstate(s)?,
        None => bail!("--tpmstate dir=D is required"),
    };
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

    let log = make_log(log_opt.as_ref())?;
    if let Some(action) = seccomp {
        if action != SeccompAction::None {
            log.info(format_args!(
                "--seccomp action={action:?} ignored: no seccomp profile is installed"
            ));
        }
    }
    let dir = StateDir::open(&tpmstate.dir)?.with_file_mode(tpmstate.mode);
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

    let log = make_log(log_opt.as_ref())?;
    let dir = StateDir::open(&tpmstate.dir)?.with_file_mode(tpmstate.mode);
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
