//! The standalone node agent (`trustlaunch agent`) against a real `trustlaunch up` with the
//! records backend — the shape of a real VM: its TPM is a separate process (`trustlaunch vtpm
//! socket` over TCP, endorsed by the server's vTPM CA), its PCRs hold a real OVMF + shim +
//! grub + Debian kernel boot (the recorded event log's digests extended into them), and the
//! agent pushes evidence over HTTP to the verifier, which journals every verdict in the
//! database. Checked: 1,000 healthy attestations without one false alert, verdicts that
//! survive a server crash, PCRs that do not match the log raise an alert naming the reason,
//! a TPM from an unknown CA is refused enrollment, malformed and oversized requests get
//! precise 4xx answers, the rate limit answers 429 with Retry-After, and restarting
//! PostgreSQL in the middle of a run loses no verdict.
#![allow(clippy::unwrap_used)]

mod control_plane;
mod ports;

use control_plane::{sh, Server, EXE};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn corpus_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../eventlog/testdata/ovmf-debian12/secureboot-shim-grub-linux.bin")
}

/// `trustlaunch vtpm socket` on TCP, manufactured with EK certificates from `ca_dir`.
struct Vtpm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Vtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vtpm {
    fn start(ca_dir: &Path) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = ports::free_port_pair();
            let pid = dir.path().join("pid");
            let mut child = Command::new(EXE)
                .args(["vtpm", "socket", "--tpm2"])
                .args(["--server", &format!("type=tcp,port={port}")])
                .args(["--ctrl", &format!("type=tcp,port={}", port + 1)])
                .args(["--tpmstate", &format!("dir={}", dir.path().display())])
                .args(["--flags", "not-need-init,startup-clear"])
                .args(["--pid", &format!("file={}", pid.display())])
                .arg("--ca-dir")
                .arg(ca_dir)
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !pid.exists() && Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if pid.exists() {
                return Self {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("trustlaunch vtpm socket did not start");
    }

    fn client(&self) -> agent::Client<agent::Connection> {
        agent::Client::new(agent::Connection::Tcp(
            TcpStream::connect(("127.0.0.1", self.port)).unwrap(),
        ))
    }

    /// Extend every measured event of `log` into the PCRs, each bank it records — what the
    /// firmware did during that boot.
    fn boot(&self, log: &Path) {
        let log = eventlog::EventLog::parse(&std::fs::read(log).unwrap()).unwrap();
        let mut c = self.client();
        for e in log.events.iter().skip(1) {
            if e.event_type == eventlog::EventType::EV_NO_ACTION {
                continue;
            }
            let digests: Vec<(u16, Vec<u8>)> = e
                .digests
                .iter()
                .map(|d| (d.alg.0, d.bytes.clone()))
                .collect();
            c.pcr_extend(e.pcr, &digests).unwrap();
        }
    }
}

fn admin_token(s: &Server) -> String {
    std::fs::read_to_string(s.dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_string()
}

fn http() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

/// (status, JSON body) of an admin GET.
fn admin_get(s: &Server, path: &str) -> (u16, Value) {
    let r = http()
        .get(&format!("{}{path}", s.url))
        .set("Authorization", &format!("Bearer {}", admin_token(s)))
        .call();
    answer(r)
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{e}"),
    }
}

/// A cluster `rg/c1` with one Trusted Launch node; its name.
fn cluster_with_one_node(s: &Server) -> String {
    s.ok(&sh(
        "create -g rg -n c1 --node-count 1 --enable-secure-boot --enable-vtpm --generate-ssh-keys",
    ));
    let nodes = s.ok(&sh(
        "nodepool list-nodes -g rg --cluster-name c1 -n nodepool1",
    ));
    nodes[0]["name"].as_str().unwrap().to_string()
}

/// The pool's reference policy, learned from the corpus boot's log with the CLI and PUT
/// through the admin API.
fn put_learned_policy(s: &Server) {
    let out = Command::new(EXE)
        .args(["attest", "policy", "from-eventlog"])
        .arg(corpus_log())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = http()
        .put(&format!(
            "{}/admin/attestation/policies/rg/c1/nodepool1",
            s.url
        ))
        .set("Authorization", &format!("Bearer {}", admin_token(s)))
        .send_json(policy);
    assert_eq!(answer(r).0, 200);
}

fn agent_cmd(
    s: &Server,
    node: &str,
    tpm: &Vtpm,
    log: &Path,
    count: u64,
    interval: &str,
) -> Command {
    let mut c = Command::new(EXE);
    c.args(["agent", "--server", &s.url, "--node", node])
        .args(["--tpm", &format!("tcp:127.0.0.1:{}", tpm.port)])
        .arg("--eventlog")
        .arg(log)
        .args([
            "--count",
            &count.to_string(),
            "--interval",
            interval,
            "--retry-for",
            "120",
        ])
        .env_remove("TRUSTLAUNCH_ENDPOINT")
        .stdin(Stdio::null());
    c
}

/// Runs the agent to completion: exit code, the JSON line of each attestation, stderr.
fn run_agent(
    s: &Server,
    node: &str,
    tpm: &Vtpm,
    log: &Path,
    count: u64,
) -> (i32, Vec<Value>, String) {
    let out = agent_cmd(s, node, tpm, log, count, "0").output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_thousand_healthy_attestations_pushed_over_http_raise_no_alert_and_survive_a_crash() {
    thousand_healthy(None);
}

#[test]
fn a_thousand_healthy_attestations_on_postgresql() {
    thousand_healthy(Some(control_plane::fresh_postgres()));
}

fn thousand_healthy(database: Option<String>) {
    let mut s = Server::start(
        database,
        &["--backend", "records", "--agent-rate-limit", "100000"],
    );
    let node = cluster_with_one_node(&s);
    put_learned_policy(&s);
    let tpm = Vtpm::start(&s.dir.join("vtpm-ca"));
    tpm.boot(&corpus_log());

    let (code, lines, err) = run_agent(&s, &node, &tpm, &corpus_log(), 1000);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.len(), 1000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["attestation"], i as u64 + 1);
        assert_eq!(l["status"], "Healthy", "attestation {}: {l:#}", i + 1);
    }
    // The token names the node and its pool, and says Secure Boot was on.
    let token = lines[999]["token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["node"], node.as_str());
    assert_eq!(claims["pool"], "rg/c1/nodepool1");
    assert_eq!(claims["secureboot"], true);
    let (_, alerts) = admin_get(&s, "/admin/alerts");
    assert_eq!(alerts["value"], json!([]), "no false alert");
    // The node record mirrors the verdict.
    let nodes = s.ok(&sh(
        "nodepool list-nodes -g rg --cluster-name c1 -n nodepool1",
    ));
    assert_eq!(nodes[0]["attestation"]["status"], "Healthy", "{nodes:#}");

    // SIGKILL the server: every verdict the agent was told is in the database, and the
    // verifier comes back with the enrollment (no re-enrollment needed) and the history.
    s.restart();
    let (_, h) = admin_get(&s, &format!("/admin/nodes/{node}/attestations"));
    assert_eq!(
        h["stored"],
        json!({"total": 1000, "healthy": 1000}),
        "{h:#}"
    );
    assert_eq!(h["value"].as_array().unwrap().len(), 64);
    let (code, lines, err) = run_agent(&s, &node, &tpm, &corpus_log(), 1);
    assert_eq!(
        (code, lines[0]["status"].as_str()),
        (0, Some("Healthy")),
        "{err}"
    );
}

#[test]
fn pcrs_that_do_not_match_the_log_raise_an_alert_and_an_unknown_ca_is_refused() {
    let s = Server::start(None, &["--backend", "records"]);
    let node = cluster_with_one_node(&s);
    put_learned_policy(&s);

    // The PCRs hold one measurement more than the log shows (a hidden component).
    let tpm = Vtpm::start(&s.dir.join("vtpm-ca"));
    tpm.boot(&corpus_log());
    tpm.client()
        .pcr_extend(4, &[(0x000B, vec![0x5a; 32])])
        .unwrap();
    let (code, lines, err) = run_agent(&s, &node, &tpm, &corpus_log(), 1);
    assert_eq!(code, 1, "{err}");
    assert_eq!(lines[0]["status"], "Unhealthy", "{:#}", lines[0]);
    let alert = &lines[0]["alert"];
    assert!(
        alert["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["reason"] == "event log does not replay to the quoted PCRs"),
        "{alert:#}"
    );
    let (_, alerts) = admin_get(&s, "/admin/alerts");
    assert_eq!(alerts["value"][0]["node"], node.as_str());
    // Acknowledged through the API: the answer is the alert as it now stands.
    let id = alerts["value"][0]["id"].as_u64().unwrap();
    let (code, acked) = answer(
        http()
            .post(&format!("{}/admin/alerts/{id}/ack", s.url))
            .set("Authorization", &format!("Bearer {}", admin_token(&s)))
            .call(),
    );
    assert_eq!(code, 200);
    assert_eq!(
        (acked["id"].as_u64(), &acked["acknowledged"]),
        (Some(id), &json!(true))
    );
    assert_eq!(acked["failures"], alerts["value"][0]["failures"]);
    let (_, alerts) = admin_get(&s, "/admin/alerts");
    assert_eq!(alerts["value"][0]["acknowledged"], true);
    let (code, _) = answer(
        http()
            .post(&format!("{}/admin/alerts/99999/ack", s.url))
            .set("Authorization", &format!("Bearer {}", admin_token(&s)))
            .call(),
    );
    assert_eq!(code, 404);
    let nodes = s.ok(&sh(
        "nodepool list-nodes -g rg --cluster-name c1 -n nodepool1",
    ));
    assert_eq!(nodes[0]["attestation"]["status"], "Unhealthy");
    // Evidence that does not hold together teaches nothing: no relearning from it.
    let out = node_cli(&s, &["relearn", &node]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no consistent evidence"), "{err}");

    // A TPM endorsed by another CA (another host's, not trusted here) cannot enroll.
    let other_ca = tempfile::tempdir().unwrap();
    let stranger = Vtpm::start(other_ca.path());
    stranger.boot(&corpus_log());
    let (code, lines, err) = run_agent(&s, &node, &stranger, &corpus_log(), 1);
    assert_eq!(code, 2, "{err}");
    assert!(lines.is_empty());
    assert!(err.contains("HTTP 403 EnrollmentRefused"), "{err}");
    // ... and the refusal is an integrity alert naming the EK certificate.
    let (_, alerts) = admin_get(&s, "/admin/alerts");
    let last = alerts["value"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["node"], node.as_str());
    assert_eq!(last["severity"], "high");
    let f = &last["failures"][0];
    assert_eq!(f["component"], "EK certificate", "{last:#}");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .starts_with("enrollment refused: "),
        "{last:#}"
    );
}

/// `trustlaunch node ARGS` against the server.
fn node_cli(s: &Server, args: &[&str]) -> std::process::Output {
    Command::new(EXE)
        .arg("node")
        .args(args)
        .env("TRUSTLAUNCH_DATA_DIR", &s.dir)
        .env_remove("TRUSTLAUNCH_ENDPOINT")
        .env_remove("TRUSTLAUNCH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A pool whose policy is out of date (another kernel) alerts on a good node; `trustlaunch
/// node relearn` learns the policy from that node's latest boot and the next attestation is
/// healthy.
#[test]
fn relearn_takes_the_pool_policy_from_a_nodes_latest_boot() {
    let s = Server::start(None, &["--backend", "records"]);
    let node = cluster_with_one_node(&s);
    let out = Command::new(EXE)
        .args(["attest", "policy", "from-eventlog"])
        .arg(corpus_log())
        .output()
        .unwrap();
    let mut stale: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kernel = stale["components"]["kernel"][0]
        .as_str()
        .unwrap()
        .to_string();
    stale["components"]["kernel"] = json!(["ab".repeat(32)]);
    let r = http()
        .put(&format!(
            "{}/admin/attestation/policies/rg/c1/nodepool1",
            s.url
        ))
        .set("Authorization", &format!("Bearer {}", admin_token(&s)))
        .send_json(stale);
    assert_eq!(answer(r).0, 200);
    let tpm = Vtpm::start(&s.dir.join("vtpm-ca"));
    tpm.boot(&corpus_log());

    let (code, lines, err) = run_agent(&s, &node, &tpm, &corpus_log(), 1);
    assert_eq!(code, 1, "{err}");
    let f = &lines[0]["alert"]["failures"][0];
    assert_eq!(f["reason"], "kernel digest not in baseline", "{f:#}");
    assert_eq!(f["observed"], kernel.as_str());

    let out = node_cli(&s, &["relearn", &node]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pool"], "rg/c1/nodepool1");
    assert_eq!(v["policy"]["components"]["kernel"], json!([kernel]));
    let (_, p) = admin_get(&s, "/admin/attestation/policies/rg/c1/nodepool1");
    assert_eq!(p, v["policy"]);

    let (code, lines, err) = run_agent(&s, &node, &tpm, &corpus_log(), 1);
    assert_eq!(
        (code, lines[0]["status"].as_str()),
        (0, Some("Healthy")),
        "{err}"
    );
}

#[test]
fn malformed_oversized_and_too_frequent_agent_requests_get_precise_answers() {
    let s = Server::start(None, &["--backend", "records", "--agent-rate-limit", "5"]);
    let node = cluster_with_one_node(&s);
    let post = |what: &str, body: Value| {
        answer(
            http()
                .post(&format!("{}/attestation/v1/nodes/{node}/{what}", s.url))
                .send_json(body),
        )
    };
    let (code, v) = post(
        "enroll",
        json!({"ekCertificate": "%%%", "ekPublic": "", "akPublic": ""}),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ekCertificate"),
        "{v}"
    );
    let (code, v) = post(
        "enroll",
        json!({"ekCertificate": "", "ekPublic": "zz", "akPublic": ""}),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ekPublic: not hex"),
        "{v}"
    );
    let (code, v) = post("evidence", json!({"quote": "00"}));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field"),
        "{v}"
    );
    let (code, v) = post("nonce", json!({}));
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("NodeNotEnrolled")),
        "{v}"
    );
    // Larger than the 4 MiB agent limit: refused before it is read.
    let big = "A".repeat(server::AGENT_MAX_BODY + 1);
    let (code, v) = post(
        "evidence",
        json!({"quote": "", "signature": "", "pcrs": {}, "eventLog": big}),
    );
    assert_eq!(code, 413, "{v}");
    // Five per second, bursts of ten: a burst of 40 gets 429s with Retry-After.
    let mut limited = None;
    for _ in 0..40 {
        match http()
            .post(&format!("{}/attestation/v1/nodes/{node}/nonce", s.url))
            .send_json(json!({}))
        {
            Err(ureq::Error::Status(429, r)) => {
                limited = Some(r.header("retry-after").unwrap_or_default().to_string());
                break;
            }
            _ => continue,
        }
    }
    let retry_after: u64 = limited.expect("a 429 within 40 requests").parse().unwrap();
    assert!(retry_after >= 1);
}

/// A private PostgreSQL server (initdb into a temporary directory, its own port), so that
/// this test can stop and start it without disturbing the other tests' server.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

impl Postgres {
    /// `program ARGS` as the `postgres` user when running as root (PostgreSQL refuses root).
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(program);
        let mut c = if unsafe_free_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(args).stdin(Stdio::null()).output().unwrap()
    }

    fn start() -> Self {
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/test.sh installs it)")
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
            .max()
            .unwrap();
        let dir = tempfile::Builder::new()
            .prefix("tl-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let pg = Self {
            port: ports::free_port_pair(),
            bin: PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")),
            dir,
        };
        if unsafe_free_is_root() {
            let st = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops at once, as a crash does (crash recovery on the next start).
    fn down(&self) {
        let out = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn unsafe_free_is_root() -> bool {
    // The effective uid of this process, from /proc (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// PostgreSQL goes down (an immediate stop) in the middle of a run of 400 attestations and
/// stays down longer than the verifier's journal retries: the verifier answers 503, the
/// agent retries with fresh nonces, and when the database is back every verdict the agent
/// was given is stored, once.
#[test]
fn restarting_postgresql_during_a_run_loses_no_verdict() {
    let pg = Postgres::start();
    let s = Server::start(
        Some(pg.url()),
        &["--backend", "records", "--agent-rate-limit", "100000"],
    );
    let node = cluster_with_one_node(&s);
    put_learned_policy(&s);
    let tpm = Vtpm::start(&s.dir.join("vtpm-ca"));
    tpm.boot(&corpus_log());

    // 50 ms apart: the outage (from the 50th verdict, 10 s) falls well inside the run (at
    // least 20 s) however busy the machine is.
    let mut agent = agent_cmd(&s, &node, &tpm, &corpus_log(), 400, "0.05")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = agent.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&l);
            text.push('\n');
        }
        text
    });
    // Each verdict line with the time it arrived, read on a thread of its own.
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Value)>>> = Default::default();
    let reader = {
        let seen = std::sync::Arc::clone(&seen);
        let stdout = agent.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
                seen.lock().unwrap().push((Instant::now(), v));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().len() < 50 {
        assert!(
            Instant::now() < deadline,
            "the agent stalled before the outage"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    pg.down();
    let down = Instant::now();
    let at_down = seen.lock().unwrap().len();
    std::thread::sleep(server_journal_retry() + Duration::from_secs(2));
    let up = Instant::now();
    let at_up = seen.lock().unwrap().len();
    pg.up();
    reader.join().unwrap();
    let timed = std::mem::take(&mut *seen.lock().unwrap());
    // No verdict is confirmed while the database is down (a line arriving in the first
    // half second may be a commit that finished just before the stop).
    let during = timed
        .iter()
        .filter(|(t, _)| *t > down + Duration::from_millis(500) && *t < up)
        .count();
    let diagnostics = format!(
        "{at_down} verdicts before the stop, {at_up} when it restarted, {during} confirmed while down, {} in all",
        timed.len()
    );
    assert_eq!(during, 0, "{diagnostics}");
    assert!(
        at_up < 400,
        "the agent was done before the database came back: {diagnostics}"
    );
    let lines: Vec<Value> = timed.into_iter().map(|(_, v)| v).collect();
    let code = agent.wait().unwrap().code();
    let err = err.join().unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines.len(), 400);
    assert!(lines.iter().all(|l| l["status"] == "Healthy"), "{err}");
    // The outage was seen: the verifier said its store was unavailable and the agent retried.
    assert!(
        err.contains("HTTP 503 StoreUnavailable"),
        "{diagnostics}\nagent stderr:\n{err}"
    );
    // Every verdict the agent received is stored. A commit cut off by the outage may have
    // landed without its answer reaching the agent (which then attested again): such a
    // verdict is stored too, so there may be more rows than lines, never fewer.
    let (_, h) = admin_get(&s, &format!("/admin/nodes/{node}/attestations"));
    let total = h["stored"]["total"].as_u64().unwrap();
    assert!((400..=402).contains(&total), "{h:#}");
    assert_eq!(h["stored"]["healthy"], total, "{h:#}");
    let (_, alerts) = admin_get(&s, "/admin/alerts");
    assert_eq!(alerts["value"], json!([]));
}

/// How long the server's journal retries a commit (crates/server/src/journal.rs).
fn server_journal_retry() -> Duration {
    server::JOURNAL_RETRY
}

/// The server publishes its OpenAPI document without credentials, and openapi-spec-validator
/// (PyPI; scripts/test.sh installs it) finds it valid OpenAPI 3.0.
#[test]
fn the_openapi_document_is_served_and_valid() {
    let s = Server::start(None, &["--backend", "records"]);
    let r = http()
        .get(&format!("{}/openapi.json", s.url))
        .call()
        .unwrap();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = r.into_string().unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["paths"]["/attestation/v1/nodes/{node}/evidence"]["post"].is_object());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new("openapi-spec-validator")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator is not a rubber stamp: an operation whose path parameter is undeclared
    // fails it.
    let mut broken = doc.clone();
    broken["paths"]["/admin/alerts/{id}/ack"]["post"]["parameters"] = json!([]);
    std::fs::write(&path, broken.to_string()).unwrap();
    let out = Command::new("openapi-spec-validator")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Evidence submitted by hand (what an attacker on the network or on the node could send),
/// after the node enrolled with `trustlaunch agent --once`: (status, answer).
struct Submitter<'a> {
    s: &'a Server,
    node: String,
}

impl Submitter<'_> {
    fn post(&self, what: &str, body: Value) -> (u16, Value) {
        answer(
            http()
                .post(&format!(
                    "{}/attestation/v1/nodes/{}/{what}",
                    self.s.url, self.node
                ))
                .send_json(body),
        )
    }

    fn nonce(&self) -> Vec<u8> {
        let (code, v) = self.post("nonce", json!({}));
        assert_eq!(code, 200, "{v}");
        hex::decode(v["nonce"].as_str().unwrap()).unwrap()
    }

    /// The TPM's quote over `nonce` as the evidence body, with `log`.
    fn evidence(tpm: &Vtpm, nonce: &[u8], log: &[u8]) -> Value {
        use base64::Engine as _;
        let mut c = tpm.client();
        let ak = c.create_ak().unwrap();
        let e = c
            .evidence(
                &ak,
                nonce,
                tpm::hash::HashAlg::Sha256,
                &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14],
            )
            .unwrap();
        c.flush(ak.handle).unwrap();
        let pcrs: serde_json::Map<String, Value> = e
            .pcrs
            .iter()
            .map(|(_, p, v)| (p.to_string(), json!(hex::encode(v))))
            .collect();
        json!({
            "quote": hex::encode(&e.quote.attest),
            "signature": hex::encode(&e.quote.signature),
            "pcrs": {"sha256": pcrs},
            "eventLog": base64::engine::general_purpose::STANDARD.encode(log),
        })
    }

    /// Submits `body`; the verdict must be Unhealthy with an alert naming `reason`, and the
    /// alert must be listed.
    fn alerts(&self, body: Value, reason: &str) {
        let (code, v) = self.post("evidence", body);
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["status"], "Unhealthy", "{reason}: {v:#}");
        let reasons: Vec<&str> = v["alert"]["failures"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["reason"].as_str())
            .collect();
        assert!(
            reasons.iter().any(|r| r.contains(reason)),
            "expected {reason:?} in {reasons:?}"
        );
        let id = v["alert"]["id"].as_u64().unwrap();
        let (_, listed) = admin_get(self.s, "/admin/alerts");
        assert!(
            listed["value"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["id"] == id && a["node"] == self.node.as_str()),
            "{listed:#}"
        );
    }
}

/// The attacks the verifier must catch in pushed evidence, each raising a listed alert that
/// names the reason: a replayed quote (an old nonce), a quote by another TPM's AK, an event
/// log with a retyped event, a truncated log.
#[test]
fn replayed_foreign_retyped_and_truncated_evidence_raise_alerts() {
    let s = Server::start(None, &["--backend", "records"]);
    let node = cluster_with_one_node(&s);
    put_learned_policy(&s);
    let tpm = Vtpm::start(&s.dir.join("vtpm-ca"));
    tpm.boot(&corpus_log());
    let (code, _, err) = run_agent(&s, &node, &tpm, &corpus_log(), 1);
    assert_eq!(code, 0, "{err}");
    let sub = Submitter { s: &s, node };
    let log = std::fs::read(corpus_log()).unwrap();

    // Genuine evidence is healthy once; the same evidence again is a replay.
    let genuine = Submitter::evidence(&tpm, &sub.nonce(), &log);
    let (_, v) = sub.post("evidence", genuine.clone());
    assert_eq!(v["status"], "Healthy", "{v:#}");
    sub.alerts(genuine, "nonce mismatch: possible replay");

    // Another TPM (endorsed by the same CA, with the same boot) quotes the node's nonce.
    let other = Vtpm::start(&s.dir.join("vtpm-ca"));
    other.boot(&corpus_log());
    sub.alerts(
        Submitter::evidence(&other, &sub.nonce(), &log),
        "quote signature",
    );

    // The Secure Boot variable's event retyped: its digest still matches, its meaning not.
    let mut parsed = eventlog::EventLog::parse(&log).unwrap();
    let sb = parsed
        .events
        .iter()
        .position(|e| e.event_type == eventlog::EventType::EV_EFI_VARIABLE_DRIVER_CONFIG)
        .unwrap();
    parsed.events[sb].event_type = eventlog::EventType::EV_EVENT_TAG;
    sub.alerts(
        Submitter::evidence(&tpm, &sub.nonce(), &parsed.to_bytes()),
        "event 4: type EV_EVENT_TAG is not allowed in PCR 7",
    );

    // The log cut in the middle of an event.
    let cut = eventlog::EventLog::parse(&log).unwrap().events[16].offset + 10;
    sub.alerts(
        Submitter::evidence(&tpm, &sub.nonce(), &log[..cut]),
        "event 16",
    );
}
