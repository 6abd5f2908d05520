//! `trustlaunch agent`: the node agent as a standalone process, for nodes that are real VMs.
//! It enrolls the node's TPM with the registrar, then attests at start and every
//! `--interval`, pushing each piece of evidence to the verifier (push model: nothing
//! listens on the node). Failed requests are retried with exponential backoff (honouring
//! Retry-After); each retry starts over with a fresh nonce, and a node the verifier no longer
//! knows enrolls again.

use agent::{Client, Connection, TpmAddress};
use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tpm::hash::HashAlg;

/// The PCRs quoted: the firmware's, the boot path's, the Secure Boot policy's and shim's.
const QUOTED_PCRS: [u8; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];

#[derive(Debug, Args)]
#[command(after_help = "\
Each attestation prints one JSON line: {\"attestation\": N, \"status\": \"Healthy\"|\"Unhealthy\",
\"token\"|\"alert\"}. With --once or --count the exit status is 0 when every attestation was
Healthy, 1 when one was not, 2 on an error that retries did not overcome.")]
pub struct AgentArgs {
    /// The control plane's URL (what `trustlaunch up` prints).
    #[arg(long, env = "TRUSTLAUNCH_ENDPOINT", value_name = "URL")]
    server: String,
    /// This node's name in the management plane.
    #[arg(long, env = "TRUSTLAUNCH_NODE", value_name = "NAME")]
    node: String,
    /// The TPM: /dev/tpmrm0 (the kernel's resource manager), tcp:HOST:PORT or unix:PATH (a
    /// simulator's command socket: swtpm or `trustlaunch vtpm socket`).
    #[arg(long, default_value = "/dev/tpmrm0", value_name = "ADDR")]
    tpm: TpmAddress,
    /// The firmware's TCG event log.
    #[arg(
        long,
        default_value = "/sys/kernel/security/tpm0/binary_bios_measurements",
        value_name = "FILE"
    )]
    eventlog: PathBuf,
    /// Seconds between attestations (fractions allowed).
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS", value_parser = interval)]
    interval: f64,
    /// Attest once and exit.
    #[arg(long, conflicts_with = "count")]
    once: bool,
    /// Attest this many times and exit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Give up on one attestation after retrying this long.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    retry_for: u64,
}

fn interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0 to 86400")),
    }
}

/// Why one try failed: retry it (transient) or stop.
enum Failure {
    /// Connection trouble, 5xx, 429: try again after at least this long.
    Retry(String, Duration),
    /// The verifier no longer knows this node: enroll again, then retry.
    Reenroll(String),
    Fatal(anyhow::Error),
}

struct Agent {
    args: AgentArgs,
    http: ureq::Agent,
}

fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl Agent {
    fn url(&self, what: &str) -> String {
        format!(
            "{}/attestation/v1/nodes/{}/{what}",
            base(&self.args.server),
            self.args.node
        )
    }

    /// POST `body` to the agents' API; the JSON answer, or why not.
    fn post(&self, what: &str, body: &Value) -> Result<Value, Failure> {
        match self.http.post(&self.url(what)).send_json(body) {
            Ok(r) => r
                .into_json::<Value>()
                .map_err(|e| Failure::Retry(format!("{what}: {e}"), Duration::ZERO)),
            Err(ureq::Error::Status(status, r)) => {
                let wait = r
                    .header("retry-after")
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or_default();
                let text = r.into_string().unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let code = v["error"]["code"].as_str().unwrap_or("").to_string();
                let message = v["error"]["message"].as_str().unwrap_or(&text).to_string();
                let why = format!("{what}: HTTP {status} {code}: {message}");
                match status {
                    429 | 500..=599 => Err(Failure::Retry(why, wait)),
                    // No reference policy yet: the operator may still be setting it.
                    404 if code == "NoReferencePolicy" => Err(Failure::Retry(why, wait)),
                    409 => Err(Failure::Reenroll(why)),
                    _ => Err(Failure::Fatal(anyhow::anyhow!(why))),
                }
            }
            Err(e) => Err(Failure::Retry(format!("{what}: {e}"), Duration::ZERO)),
        }
    }

    fn tpm(&self) -> Result<Client<Connection>, Failure> {
        self.args
            .tpm
            .connect()
            .map(Client::new)
            .map_err(|e| Failure::Retry(format!("TPM {e}"), Duration::ZERO))
    }

    /// Enrollment: the EK certificate and both public areas, then the credential activated.
    fn enroll(&self) -> Result<(), Failure> {
        let tpm_err = |e: agent::TpmError| Failure::Fatal(anyhow::anyhow!("TPM: {e}"));
        let mut tpm = self.tpm()?;
        let id = tpm.identity().map_err(tpm_err)?;
        use tpm::codec::Marshal;
        let challenge = self.post(
            "enroll",
            &json!({
                "ekCertificate": base64::engine::general_purpose::STANDARD.encode(&id.ek_certificate),
                "ekPublic": hex::encode(id.ek.public.to_bytes()),
                "akPublic": hex::encode(id.ak.public.to_bytes()),
            }),
        )?;
        let field = |k: &str| {
            challenge[k]
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| Failure::Fatal(anyhow::anyhow!("enroll: the answer has no {k}")))
        };
        let secret = tpm
            .activate_credential(
                &id.ak,
                &id.ek,
                &field("credentialBlob")?,
                &field("encryptedSecret")?,
            )
            .map_err(tpm_err)?;
        for h in [id.ak.handle, id.ek.handle] {
            let _ = tpm.flush(h);
        }
        self.post("activate", &json!({"secret": hex::encode(secret)}))?;
        Ok(())
    }

    /// One attestation: nonce, quote, PCRs, the event log, the verdict.
    fn attest(&self) -> Result<Value, Failure> {
        let log = std::fs::read(&self.args.eventlog).map_err(|e| {
            Failure::Fatal(anyhow::anyhow!(
                "--eventlog {}: {e}",
                self.args.eventlog.display()
            ))
        })?;
        let nonce = self.post("nonce", &json!({}))?;
        let nonce = nonce["nonce"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| {
                Failure::Retry("nonce: the answer has no nonce".into(), Duration::ZERO)
            })?;
        let mut tpm = self.tpm()?;
        let tpm_err = |e: agent::TpmError| Failure::Retry(format!("TPM: {e}"), Duration::ZERO);
        let ak = tpm.create_ak().map_err(tpm_err)?;
        let evidence = tpm.evidence(&ak, &nonce, HashAlg::Sha256, &QUOTED_PCRS);
        let _ = tpm.flush(ak.handle);
        let evidence = evidence.map_err(tpm_err)?;
        let mut pcrs = serde_json::Map::new();
        for (bank, pcr, value) in &evidence.pcrs {
            pcrs.entry(bank.name().to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|m| m.insert(pcr.to_string(), json!(hex::encode(value))));
        }
        self.post(
            "evidence",
            &json!({
                "quote": hex::encode(&evidence.quote.attest),
                "signature": hex::encode(&evidence.quote.signature),
                "pcrs": pcrs,
                "eventLog": base64::engine::general_purpose::STANDARD.encode(&log),
            }),
        )
    }

    /// `op` until it succeeds, re-enrolling when told to, for at most `--retry-for`.
    fn with_retries<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&Self) -> Result<T, Failure>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + Duration::from_secs(self.args.retry_for);
        let mut delay = Duration::from_millis(200);
        loop {
            let why = match op(self) {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Reenroll(why)) => {
                    eprintln!("{why}; enrolling again");
                    match self.enroll() {
                        Ok(()) => continue,
                        Err(Failure::Fatal(e)) => return Err(e),
                        Err(Failure::Retry(w, _) | Failure::Reenroll(w)) => (w, Duration::ZERO),
                    }
                }
                Err(Failure::Retry(w, wait)) => (w, wait),
            };
            let wait = delay.max(why.1);
            if Instant::now() + wait > deadline {
                bail!(
                    "{what}: {} (gave up after {} s)",
                    why.0,
                    self.args.retry_for
                );
            }
            eprintln!("{what}: {}; retrying in {wait:?}", why.0);
            std::thread::sleep(wait);
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match attest_loop(args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

fn attest_loop(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if !args.server.starts_with("http://") && !args.server.starts_with("https://") {
        bail!(
            "--server {:?}: expected an http:// or https:// URL",
            args.server
        );
    }
    let count = if args.once { Some(1) } else { args.count };
    let agent = Agent {
        http: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build(),
        args,
    };
    agent
        .with_retries("enrollment", Agent::enroll)
        .context("enrolling this node's TPM")?;
    let mut all_healthy = true;
    let mut n = 0u64;
    loop {
        n += 1;
        let outcome = agent.with_retries("attestation", Agent::attest)?;
        let healthy = outcome["status"] == "Healthy";
        all_healthy &= healthy;
        let mut line = json!({"attestation": n});
        if let (Some(l), Some(o)) = (line.as_object_mut(), outcome.as_object()) {
            l.extend(o.clone());
        }
        println!("{line}");
        if count.is_some_and(|c| n >= c) {
            return Ok(if all_healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        std::thread::sleep(Duration::from_secs_f64(agent.args.interval));
    }
}
