//! `trustlaunch up`: runs the control plane (the AKS-shaped API, long-running operations, the
//! Kubernetes node API) on one address, with its state in a data directory and a database.

use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Where state lives when neither `--data-dir` nor `TRUSTLAUNCH_DATA_DIR` says.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".trustlaunch")
}

/// The file `up` writes its URL to, so the CLI finds the server with no flag.
pub const ENDPOINT_FILE: &str = "endpoint";

#[derive(Debug, Args)]
#[command(after_help = "\
The server prints its URL and writes it to DATA_DIR/endpoint; the `aks` commands find it there,
or through TRUSTLAUNCH_ENDPOINT / --endpoint. Operators authenticate with the bearer token in
DATA_DIR/admin-token (created 0600 on first start). Unfinished operations (a rolling reimage cut
short by a crash) resume when the server starts again. The registrar and verifier run with every
backend: node agents enroll and push evidence to /attestation/v1/nodes/NODE/...; verdicts,
enrollments, policies and alerts are journalled in the database before anyone is told. The API
is described at /openapi.json.")]
pub struct UpArgs {
    /// State directory: admin token, endpoint file, and the SQLite database by default.
    #[arg(long, env = "TRUSTLAUNCH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = server::DEFAULT_LISTEN, value_name = "ADDR")]
    listen: SocketAddr,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [default: sqlite://DATA_DIR/trustlaunch.db].
    #[arg(long, env = "TRUSTLAUNCH_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = server::DEFAULT_MAX_BODY, value_name = "BYTES")]
    max_body: usize,
    /// Records-only backend: pretend each node boot takes this long (demos, restart tests).
    #[arg(long, default_value_t = 0, value_name = "MS", hide = true)]
    simulate_boot_ms: u64,
    /// How nodes are realised: `embedded` (virtual firmware + a vTPM per node + the node
    /// agent attesting to the built-in verifier), `records` (nodes are records, realised
    /// elsewhere: their `trustlaunch agent` attests over the API), or
    /// `auto`: embedded when the node images exist.
    #[arg(long, default_value = "auto", value_parser = ["auto", "embedded", "records"])]
    backend: String,
    /// The node images (`lab/build-node-image.sh DIR` builds DIR/images) [default: DATA_DIR/lab/images].
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// POST each new integrity alert (JSON) to this URL, with retries (repeatable).
    #[arg(long, value_name = "URL")]
    alert_webhook: Vec<String>,
    /// Trust EK certificates issued by this CA (PEM or DER; repeatable), besides this host's
    /// vTPM CA (DATA_DIR/vtpm-ca), e.g. another hypervisor host's.
    #[arg(long, value_name = "FILE")]
    ek_ca: Vec<PathBuf>,
    /// Agent requests accepted per second from one client address (bursts of twice that);
    /// more are answered 429 with Retry-After.
    #[arg(long, default_value_t = server::DEFAULT_AGENT_RATE_LIMIT, value_name = "N")]
    agent_rate_limit: u32,
}

/// Deliver new alerts to the webhooks: polled every 500 ms, each POSTed as JSON with up to
/// five attempts per webhook (backoff 0.5, 1, 2, 4 s); a webhook that keeps failing is
/// logged and skipped for that alert, never blocking the others.
fn deliver_alerts(verifier: Arc<verifier::Verifier>, hooks: Vec<String>) {
    std::thread::Builder::new()
        .name("alert-webhooks".into())
        .spawn(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build();
            let mut seen = verifier
                .alerts(None)
                .iter()
                .map(|a| a.id)
                .max()
                .unwrap_or(0);
            loop {
                let since = seen;
                for alert in verifier.alerts(None).into_iter().filter(|a| a.id > since) {
                    seen = seen.max(alert.id);
                    let body = serde_json::to_value(&alert).unwrap_or_default();
                    for hook in &hooks {
                        let mut delay = Duration::from_millis(500);
                        for attempt in 1..=5 {
                            match agent.post(hook).send_json(body.clone()) {
                                Ok(_) => break,
                                Err(e) if attempt == 5 => {
                                    eprintln!("alert {} not delivered to {hook}: {e}", alert.id)
                                }
                                Err(_) => {
                                    std::thread::sleep(delay);
                                    delay *= 2;
                                }
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
        .ok();
}

/// The registrar and verifier: EK certificates trusted from the host's vTPM CA in
/// DATA_DIR/vtpm-ca (created on first start) and from `ek_cas`; the token key in
/// DATA_DIR/token-key.pem.
pub fn verifier_for(
    data_dir: &std::path::Path,
    issuer: &str,
    ek_cas: &[PathBuf],
) -> anyhow::Result<Arc<verifier::Verifier>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(data_dir)?;
    let ca_dir = data_dir.join("vtpm-ca");
    let ca = vtpm::ManufacturerCa::load_or_create(&ca_dir)
        .with_context(|| format!("the vTPM CA in {}", ca_dir.display()))?;
    let mut roots = attest::enroll::TrustedRoots::new();
    roots.add(ca.certificate_der())?;
    for path in ek_cas {
        let bytes = std::fs::read(path).with_context(|| format!("--ek-ca {}", path.display()))?;
        let der = match std::str::from_utf8(&bytes) {
            Ok(text) if text.contains("-----BEGIN") => pem_body(text)
                .with_context(|| format!("--ek-ca {}: no CERTIFICATE block", path.display()))?,
            _ => bytes,
        };
        roots
            .add(&der)
            .with_context(|| format!("--ek-ca {}", path.display()))?;
    }
    let key_path = data_dir.join("token-key.pem");
    let signer = match std::fs::read_to_string(&key_path) {
        Ok(pem) => attest::token::TokenSigner::from_pkcs8_pem(&pem)?,
        Err(_) => {
            let mut secret = [0u8; 32];
            getrandom::getrandom(&mut secret)?;
            let signer = attest::token::TokenSigner::from_secret_bytes(&secret)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .with_context(|| format!("writing {}", key_path.display()))?;
            f.write_all(signer.to_pkcs8_pem()?.as_bytes())?;
            signer
        }
    };
    Ok(Arc::new(verifier::Verifier::new(roots, signer, issuer)))
}

/// The first CERTIFICATE block of a PEM text, decoded.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = text.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = text[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The embedded backend: nodes under DATA_DIR/nodes, their EK certificates from the vTPM CA
/// in DATA_DIR/vtpm-ca, attesting to `verifier`.
pub fn embedded_backend(
    data_dir: &std::path::Path,
    images: &std::path::Path,
    verifier: &Arc<verifier::Verifier>,
) -> anyhow::Result<Arc<nodehost::EmbeddedBackend>> {
    let ca_dir = data_dir.join("vtpm-ca");
    let backend = nodehost::EmbeddedBackend::new(
        data_dir,
        nodehost::ImageCatalog {
            dir: images.to_path_buf(),
        },
        &ca_dir,
        Arc::clone(verifier),
    )?;
    Ok(Arc::new(backend))
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let admin_token = server::load_or_create_admin_token(&data_dir)?;
    let database_url = args
        .database
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("trustlaunch.db").display()));
    let config = server::Config {
        listen: args.listen,
        data_dir: data_dir.clone(),
        database_url: database_url.clone(),
        admin_token,
        max_body: args.max_body,
        agent_rate_limit: args.agent_rate_limit,
    };
    let images = args
        .images
        .clone()
        .unwrap_or_else(|| data_dir.join("lab").join("images"));
    let embedded = match args.backend.as_str() {
        "embedded" => true,
        "records" => false,
        _ => images.join("default").join("esp").is_dir(),
    };
    let issuer = format!("http://{}", args.listen);
    let verifier = verifier_for(&data_dir, &issuer, &args.ek_ca)?;
    let (backend, backend_note): (Arc<dyn control::NodeBackend>, String) = if embedded {
        let b = embedded_backend(&data_dir, &images, &verifier).with_context(|| {
            format!(
                "the embedded backend needs the node images: bash lab/build-node-image.sh {}",
                images.parent().unwrap_or(&images).display()
            )
        })?;
        (
            b,
            format!(
                "embedded (virtual firmware, a vTPM per node, attestation; images {})",
                images.display()
            ),
        )
    } else {
        (
            Arc::new(server::backend::BootDelay {
                inner: control::RecordsOnly,
                boot: Duration::from_millis(args.simulate_boot_ms),
            }),
            "records-only (nodes are records; their agents attest over the API)".to_string(),
        )
    };
    if !args.alert_webhook.is_empty() {
        deliver_alerts(Arc::clone(&verifier), args.alert_webhook.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let endpoint_file = data_dir.join(ENDPOINT_FILE);
        server::serve(
            config,
            backend,
            Some(verifier),
            |started| {
                let url = format!("http://{}", started.listen);
                if let Err(e) = std::fs::write(&endpoint_file, format!("{url}\n")) {
                    eprintln!("warning: cannot write {}: {e}", endpoint_file.display());
                }
                println!("trustlaunch control plane listening on {url}");
                println!("  data dir:  {}", data_dir.display());
                println!("  database:  {}", store::redact(&database_url));
                println!("  backend:   {backend_note}");
                println!(
                    "  resumed:   {} unfinished operation(s)",
                    started.resumed_operations
                );
                println!("  export TRUSTLAUNCH_ENDPOINT={url}");
            },
            shutdown,
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A `trustlaunch up --backend embedded` child process on a free port, for the quickstart and
/// the pool benchmark; killed on drop.
pub struct EmbeddedServer {
    child: std::process::Child,
    data_dir: PathBuf,
}

impl EmbeddedServer {
    /// Start it with its state in `data_dir` and its output in `data_dir/server.log`; returns
    /// once it has written its endpoint file.
    pub fn start(data_dir: &std::path::Path, images: &std::path::Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        let child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--backend",
                "embedded",
                "--data-dir",
            ])
            .arg(data_dir)
            .arg("--images")
            .arg(images)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("starting trustlaunch up")?;
        let server = EmbeddedServer {
            child,
            data_dir: data_dir.to_path_buf(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !data_dir.join(ENDPOINT_FILE).exists() {
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "the server did not start; see {}",
                    data_dir.join("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `trustlaunch ARGS` against this server (its stdout, which must be a success).
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(args)
            .env("TRUSTLAUNCH_DATA_DIR", &self.data_dir)
            .env_remove("TRUSTLAUNCH_ENDPOINT")
            .env_remove("TRUSTLAUNCH_TOKEN")
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "trustlaunch {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// [`Self::run`] with `-o json`, parsed.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.run(&all)?).unwrap_or(serde_json::Value::Null))
    }

    /// Leave the server running after this value is gone.
    pub fn detach(self) -> u32 {
        let pid = self.child.id();
        std::mem::forget(self);
        pid
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
