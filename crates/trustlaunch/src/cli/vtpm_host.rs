//! `trustlaunch vtpm host` (many vTPMs in one process) and its clients `trustlaunch vtpm
//! create|delete|list|show`, which talk to the host's management API (HTTP/1.1 + JSON on
//! the Unix socket `DIR/host.sock`; [`vtpm::host`] documents it).

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vtpm::host::{self, Host};
use vtpm::{Log, StopHandle};

/// Where the host keeps its instances.
#[derive(Debug, Args)]
pub struct HostDirArg {
    /// The host directory [default: /var/lib/trustlaunch/vtpm-host as root, else
    /// $XDG_DATA_HOME or ~/.local/share, then trustlaunch/vtpm-host].
    #[arg(long = "host-dir", visible_alias = "dir", value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl HostDirArg {
    fn resolve(&self) -> Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        if vtpm::ca::running_as_root() {
            return Ok(PathBuf::from("/var/lib/trustlaunch/vtpm-host"));
        }
        let base = match std::env::var_os("XDG_DATA_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x),
            _ => PathBuf::from(
                std::env::var_os("HOME").context("HOME is not set: give --host-dir DIR")?,
            )
            .join(".local/share"),
        };
        Ok(base.join("trustlaunch/vtpm-host"))
    }
}

#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(flatten)]
    dir: HostDirArg,
    /// The manufacturer CA issuing new instances' EK certificates [default: as `vtpm ca`].
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// New instances get no EKs or EK certificates unless they ask for them (and then
    /// creation fails: the host has no CA).
    #[arg(long, conflicts_with = "ca_dir")]
    no_ek_cert: bool,
    /// Encrypt every instance's state at rest (AES-256-GCM, integrity-protected), each
    /// under its own key derived from the host key (HKDF-SHA256 over the instance name,
    /// so a state file copied into another instance does not decrypt):
    /// file=PATH[,format=hex|binary][,mode=aes-256-gcm][,remove=true|false], as
    /// `vtpm socket --key`. An encrypted instance does not start without the key.
    #[arg(long, value_name = "OPTIONS")]
    key: Option<String>,
    /// With --key: accept instances whose state is still plaintext and encrypt them at
    /// once (without this they are refused and left on disk untouched).
    #[arg(long, requires = "key")]
    encrypt_existing_state: bool,
    /// Log level on standard error: 0 nothing, 1 errors and warnings, 2 instances created,
    /// started and stopped, 3 every command, 4 hex dumps.
    #[arg(long, default_value_t = 1)]
    log_level: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Instance name: [a-z0-9][a-z0-9-]{0,62}.
    name: String,
    #[command(flatten)]
    dir: HostDirArg,
    /// Also serve the data channel on TCP 127.0.0.1 (an ephemeral port, shown as data_tcp).
    #[arg(long)]
    tcp: bool,
    /// No EKs or EK certificates in this instance (default: the host's).
    #[arg(long)]
    no_ek_cert: bool,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// Instance name.
    name: String,
    #[command(flatten)]
    dir: HostDirArg,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    dir: HostDirArg,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Output,
}

pub fn run_host(a: HostArgs) -> Result<ExitCode> {
    let dir = a.dir.resolve()?;
    let log = Log::stderr(a.log_level, Some("vtpm-host: ".into()));
    let ca_dir = if a.no_ek_cert {
        None
    } else {
        Some(match a.ca_dir {
            Some(d) => d,
            None => {
                let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
                let home = std::env::var_os("HOME").map(PathBuf::from);
                vtpm::ca::default_dir(vtpm::ca::running_as_root(), xdg.as_deref(), home.as_deref())
                    .context("no default CA directory (HOME is not set): give --ca-dir DIR")?
            }
        })
    };
    let key: Option<std::sync::Arc<dyn vtpm::key::KeyProvider>> = match a.key.as_deref() {
        Some(value) => {
            let opt = vtpm::key::parse_key_option(value)?;
            let file = vtpm::key::FileKeyProvider::from_option(&opt)?;
            Some(std::sync::Arc::new(vtpm::key::PerInstanceKeys::new(file)))
        }
        None => None,
    };
    host::raise_fd_limit();
    let host = Host::with_state_key(&dir, ca_dir, key, a.encrypt_existing_state, log.clone())
        .with_context(|| format!("host directory {}", dir.display()))?;
    let api = host::bind_api(&dir).context("management API socket")?;
    let restored = host.restore();
    host.keep_spares(host::SPARES)
        .context("cannot start the thread preparing instance directories")?;
    let stop = StopHandle::new()?;
    stop_on_signals(&stop, &log)?;
    log.info(format_args!(
        "serving {} on {} ({restored} instances restored, pid {})",
        dir.display(),
        dir.join(host::API_SOCKET).display(),
        std::process::id()
    ));
    let served = host.serve_api(&api, &stop);
    drop(api);
    host.stop_all();
    served.context("management API")?;
    Ok(ExitCode::SUCCESS)
}

fn stop_on_signals(stop: &StopHandle, log: &Log) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot install signal handlers")?;
    let stop = stop.clone();
    let log = log.clone();
    std::thread::Builder::new()
        .name("vtpm-host-signals".into())
        .spawn(move || {
            let mut forever = signals.forever();
            if let Some(sig) = forever.next() {
                log.info(format_args!("signal {sig}: saving instances and stopping"));
                stop.stop();
            }
            if let Some(sig) = forever.next() {
                log.error(format_args!("signal {sig} while stopping: exiting now"));
                std::process::exit(1);
            }
        })?;
    Ok(())
}

/// One API request; a host that is not running is explained.
pub fn call(dir: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let sock = dir.join(host::API_SOCKET);
    match host::request(&sock, method, path, body) {
        Ok(r) => Ok(r),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            bail!(
                "no vTPM host is running at {} ({e}); start one with `trustlaunch vtpm host --dir {}`",
                sock.display(),
                dir.display()
            )
        }
        Err(e) => Err(e).with_context(|| format!("vTPM host at {}", sock.display())),
    }
}

fn checked(dir: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let (status, v) = call(dir, method, path, body)?;
    if !(200..300).contains(&status) {
        let msg = v["error"].as_str().unwrap_or("(no message)");
        bail!("{status}: {msg}");
    }
    Ok(v)
}

fn print_instance(v: &Value) {
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
        let val = match &v[k] {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        println!("{k:<12} {val}");
    }
}

fn emit(output: Output, v: &Value, text: impl FnOnce(&Value)) -> Result<ExitCode> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Output::Text => text(v),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_create(a: CreateArgs) -> Result<ExitCode> {
    let dir = a.dir.resolve()?;
    let mut body = json!({ "name": a.name, "tcp": a.tcp });
    if a.no_ek_cert {
        body["ek_cert"] = json!(false);
    }
    let v = checked(&dir, "POST", "/v1/instances", Some(&body))?;
    emit(a.output, &v, print_instance)
}

pub fn run_delete(a: NameArgs) -> Result<ExitCode> {
    let dir = a.dir.resolve()?;
    let v = checked(&dir, "DELETE", &format!("/v1/instances/{}", a.name), None)?;
    emit(a.output, &v, |_| println!("deleted {}", a.name))
}

pub fn run_show(a: NameArgs) -> Result<ExitCode> {
    let dir = a.dir.resolve()?;
    let v = checked(&dir, "GET", &format!("/v1/instances/{}", a.name), None)?;
    emit(a.output, &v, print_instance)
}

pub fn run_list(a: ListArgs) -> Result<ExitCode> {
    let dir = a.dir.resolve()?;
    let v = checked(&dir, "GET", "/v1/instances", None)?;
    emit(a.output, &v, |v| {
        println!(
            "{:<24} {:<8} {:<8} {:<9} {:<22} CTRL",
            "NAME", "SERVING", "RUNNING", "LOCALITY", "DATA_TCP"
        );
        for i in v["instances"].as_array().into_iter().flatten() {
            println!(
                "{:<24} {:<8} {:<8} {:<9} {:<22} {}",
                i["name"].as_str().unwrap_or(""),
                i["serving"].to_string(),
                i["running"].to_string(),
                i["locality"].to_string(),
                i["data_tcp"].as_str().unwrap_or("-"),
                i["ctrl_socket"].as_str().unwrap_or("")
            );
        }
    })
}
