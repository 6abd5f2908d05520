//! The server's errors: `ServerError` stops `trustlaunch up`; `ApiError` is one failed
//! request, answered as ARM does: `{"error":{"code","message"}}` with one status per variant.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use control::ControlError;
use std::net::SocketAddr;
use std::path::PathBuf;
use store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the verifier's journal: {0}")]
    Journal(String),
}

#[derive(Debug, Error)]
pub enum ApiError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("missing or wrong bearer token: use the admin token from the server's data directory (admin-token)")]
    Unauthorized,
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request body is not valid JSON for this resource: {0}")]
    BadBody(String),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("label selector {0:?} is not supported (use k=v, k!=v, k or !k, comma-separated)")]
    BadSelector(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        let code = match self {
            Self::Control(e) => e.http_status(),
            Self::Store(e) => e.http_status(),
            Self::Unauthorized => 401,
            Self::TooLarge(_) => 413,
            Self::BadBody(_) | Self::BadSelector(_) => 400,
            Self::NoRoute(_) => 404,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Control(e) => e.code(),
            Self::Store(_) => "InternalServerError",
            Self::Unauthorized => "Unauthorized",
            Self::TooLarge(_) => "RequestEntityTooLarge",
            Self::BadBody(_) => "InvalidRequestContent",
            Self::NoRoute(_) => "NotFound",
            Self::BadSelector(_) => "InvalidLabelSelector",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), axum::Json(body)).into_response()
    }
}
