//! Bad input never gets a server error: Schemathesis (PyPI; scripts/test.sh installs it)
//! reads the server's own OpenAPI document and sends every operation generated requests —
//! boundary values, wrong types, missing and extra fields, odd path segments, stateful
//! sequences — with the admin token; every answer must be a client error or a success, never
//! a 5xx, and the server must still be up afterwards.
#![allow(clippy::unwrap_used)]

mod control_plane;
mod ports;

use control_plane::Server;
use std::process::Command;

#[test]
fn generated_requests_to_every_operation_never_get_a_server_error() {
    let s = Server::start(
        None,
        &["--backend", "records", "--agent-rate-limit", "100000"],
    );
    let token = std::fs::read_to_string(s.dir.join("admin-token")).unwrap();
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/openapi.json", s.url)])
        .args(["--url", &s.url])
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "25", "--seed", "20261128"])
        .args(["--no-color"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Schemathesis keeps a cache (.schemathesis/) in its working directory: not the
        // source tree.
        .current_dir(&s.dir)
        .output()
        .expect("schemathesis (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Tested: 36"),
        "every operation tested: {text}"
    );
    // Still serving.
    let health = ureq::get(&format!("{}/healthz", s.url)).call().unwrap();
    assert_eq!(health.status(), 200);
}
