//! The control-plane server behind `trustlaunch up`: an HTTP API shaped like ARM's
//! `Microsoft.ContainerService/managedClusters` and `agentPools` routes, long-running
//! operations that survive restarts, node realisation through a [`control::NodeBackend`], and
//! the read-only Kubernetes node API that `kubectl` reads through `get-credentials`.
//! Configuration arrives resolved ([`Config`]); nothing here reads the environment.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod agents;
mod api;
mod attestation;
mod auth;
pub mod backend;
mod engine;
mod error;
pub mod journal;
mod kube;
mod time;

pub use agents::AGENT_MAX_BODY;
pub use auth::{load_or_create_admin_token, ADMIN_TOKEN_FILE};
pub use error::{ApiError, ServerError};
pub use journal::{StoreJournal, RETRY_FOR as JOURNAL_RETRY};

use control::NodeBackend;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Largest request body accepted (resource documents are a few KiB).
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;
/// Agent requests per second accepted from one client address (bursts of twice that).
pub const DEFAULT_AGENT_RATE_LIMIT: u32 = 100;
/// Where `trustlaunch up` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7373";

/// Everything the server needs, resolved by the binary at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    pub admin_token: String,
    pub max_body: usize,
    /// Agent requests per second per client address.
    pub agent_rate_limit: u32,
}

/// What the server did at start-up, for the caller to print.
#[derive(Debug, Clone)]
pub struct Started {
    pub listen: SocketAddr,
    pub resumed_operations: usize,
}

/// Opens the store, restores the verifier from its journal (and journals it from then on),
/// resumes unfinished operations, binds `config.listen` and serves until `shutdown`
/// completes. `on_start` is called once the socket is bound.
pub async fn serve(
    config: Config,
    backend: Arc<dyn NodeBackend>,
    verifier: Option<Arc<verifier::Verifier>>,
    on_start: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store = store::Store::open(&config.database_url).await?;
    if let Some(v) = &verifier {
        v.restore(store.attestations().snapshot(verifier::HISTORY).await?);
        let journal =
            journal::StoreJournal::start(&config.database_url).map_err(ServerError::Journal)?;
        v.attach_journal(Box::new(journal));
    }
    let engine = engine::Engine::new(store.clone(), backend);
    let resumed = engine.resume_unfinished().await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let listen = listener.local_addr().map_err(ServerError::Serve)?;
    let state = Arc::new(api::AppState {
        store: store.clone(),
        engine,
        admin_token: config.admin_token.clone(),
        max_body: config.max_body,
        writes: tokio::sync::Mutex::new(()),
        verifier,
        agent_limiter: agents::RateLimiter::new(config.agent_rate_limit),
    });
    on_start(&Started {
        listen,
        resumed_operations: resumed,
    });
    axum::serve(
        listener,
        api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(ServerError::Serve)?;
    store.close().await;
    Ok(())
}
