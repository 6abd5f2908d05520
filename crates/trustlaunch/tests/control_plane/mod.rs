//! A real `trustlaunch up` on a free loopback port (port 0, read back from its banner) with a
//! temporary data directory, and the `trustlaunch aks` CLI pointed at it through that
//! directory's endpoint and admin-token files. Shared by the `aks_*` integration tests.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const EXE: &str = env!("CARGO_BIN_EXE_trustlaunch");

pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    /// What `trustlaunch up` printed on its last start.
    pub banner: Vec<String>,
    database: Option<String>,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // Drop the per-test PostgreSQL database (best effort).
        if let (Some(db), Ok(admin)) = (&self.database, std::env::var("TRUSTLAUNCH_TEST_POSTGRES"))
        {
            if let Some(name) = db.rsplit('/').next().filter(|n| n.starts_with("tl_cli_")) {
                let _ = Command::new("psql")
                    .arg(&admin)
                    .args([
                        "-qc",
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ])
                    .output();
            }
        }
    }
}

/// A fresh PostgreSQL database on the server `TRUSTLAUNCH_TEST_POSTGRES` names (the test
/// command starts one; without it the test fails rather than skips).
pub fn fresh_postgres() -> String {
    let admin = std::env::var("TRUSTLAUNCH_TEST_POSTGRES").expect(
        "TRUSTLAUNCH_TEST_POSTGRES must name a PostgreSQL server with CREATEDB (scripts/test.sh starts one)",
    );
    let db = format!("tl_cli_{:016x}", crate::ports::random_u64());
    let out = Command::new("psql")
        .arg(&admin)
        .args(["-qc", &format!("CREATE DATABASE {db}")])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = admin.split('?').next().unwrap_or(&admin);
    format!(
        "{}/{db}",
        &base[..base.rfind('/').expect("a database in the URL")]
    )
}

impl Server {
    pub fn start(database: Option<String>, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut s = Self {
            child: None,
            dir: tmp.path().to_path_buf(),
            url: String::new(),
            banner: Vec::new(),
            database,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(EXE);
        cmd.args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.dir)
            .args(&self.extra)
            .env_remove("TRUSTLAUNCH_DATABASE")
            .env_remove("TRUSTLAUNCH_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(db) = &self.database {
            cmd.args(["--database", db]);
        }
        let mut child = cmd.spawn().expect("start trustlaunch up");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("trustlaunch up printed nothing"));
        self.url = first
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected banner {first:?}"))
            .to_string();
        self.banner = vec![first.clone()];
        for line in lines.by_ref().map_while(Result::ok) {
            let last = line.trim_start().starts_with("export ");
            self.banner.push(line);
            if last {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same data directory and database (a new port).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// `trustlaunch aks ARGS…` against this server.
    pub fn aks(&self, args: &[&str]) -> Output {
        Command::new(EXE)
            .arg("aks")
            .args(args)
            .env("TRUSTLAUNCH_DATA_DIR", &self.dir)
            .env_remove("TRUSTLAUNCH_ENDPOINT")
            .env_remove("TRUSTLAUNCH_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run trustlaunch aks")
    }

    /// `aks ARGS` that must succeed; its stdout as JSON (Null when empty).
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.aks(args);
        assert!(
            out.status.success(),
            "trustlaunch aks {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
        }
    }

    /// Polls `aks ARGS` until `done` holds of its JSON (or fails after `secs`).
    pub fn until(&self, args: &[&str], secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.ok(args);
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {args:?}: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A command line's words (for arguments without spaces).
pub fn sh(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Exit code and stderr of a failed command.
pub fn failure(out: &Output) -> (i32, String) {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
    )
}

pub fn labels(node: &Value) -> &serde_json::Map<String, Value> {
    node["labels"].as_object().expect("labels")
}

pub fn temp_path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}
