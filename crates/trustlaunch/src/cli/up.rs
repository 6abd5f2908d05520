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
short by a crash) resume when the server starts again.")]
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
    };
    let backend: Arc<dyn control::NodeBackend> = Arc::new(server::backend::BootDelay {
        inner: control::RecordsOnly,
        boot: Duration::from_millis(args.simulate_boot_ms),
    });
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
            |started| {
                let url = format!("http://{}", started.listen);
                if let Err(e) = std::fs::write(&endpoint_file, format!("{url}\n")) {
                    eprintln!("warning: cannot write {}: {e}", endpoint_file.display());
                }
                println!("trustlaunch control plane listening on {url}");
                println!("  data dir:  {}", data_dir.display());
                println!("  database:  {}", store::redact(&database_url));
                println!(
                    "  backend:   records-only (nodes are records; attestation stays Pending)"
                );
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
