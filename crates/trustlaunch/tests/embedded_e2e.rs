//! End to end on the embedded backend, through the CLI as an operator drives it: `trustlaunch
//! up` with the node images of `lab/build-node-image.sh` (real Debian shim, grub, kernel),
//! a Trusted Launch cluster whose nodes boot through the virtual firmware into their own
//! vTPMs, enroll (EK certificate, credential activation) and attest Healthy; their health
//! tokens verify against the server's JWKS (PyJWT as the independent JWT verifier); a
//! tampered kernel on a vTPM-only node raises an alert naming the kernel and taints the
//! node; on a Secure Boot node the same kernel is refused naming it; a reimage restores
//! health; 20 more attestations of unchanged nodes raise no alert; the alert reaches a webhook.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_trustlaunch");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `trustlaunch ARGS -o json` against the server of `data`: the JSON, or the failure.
fn tl(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(args)
        .args(["-o", "json"])
        .env("TRUSTLAUNCH_DATA_DIR", data)
        .env_remove("TRUSTLAUNCH_ENDPOINT")
        .env_remove("TRUSTLAUNCH_TOKEN")
        .output()
        .expect("run trustlaunch");
    assert!(
        out.status.success(),
        "trustlaunch {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn nodes(data: &Path, pool: &str) -> Vec<Value> {
    tl(
        data,
        &[
            "aks",
            "nodepool",
            "list-nodes",
            "-g",
            "rg",
            "--cluster-name",
            "c",
            "--name",
            pool,
        ],
    )
    .as_array()
    .cloned()
    .unwrap_or_default()
}

fn status(n: &Value) -> &str {
    n["attestation"]["status"].as_str().unwrap_or("")
}

#[test]
fn trusted_launch_cluster_attests_alerts_and_recovers() {
    let lab = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache");
    let built = Command::new("bash")
        .arg(repo().join("lab/build-node-image.sh"))
        .arg(&lab)
        .stdin(Stdio::null())
        .output()
        .expect("lab/build-node-image.sh");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // A webhook receiver: the bodies of the POSTs it gets (integrity alerts).
    let hook = std::net::TcpListener::bind("127.0.0.1:0").expect("bind webhook");
    let hook_url = format!("http://{}/alerts", hook.local_addr().expect("addr"));
    let (sent, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        for stream in hook.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            let _ = sent.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    let log = std::fs::File::create(data.join("server.log")).expect("log");
    let server = Server(
        Command::new(BIN)
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--backend",
                "embedded",
                "--data-dir",
            ])
            .arg(data)
            .arg("--images")
            .arg(lab.join("images"))
            .args(["--alert-webhook", &hook_url])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("trustlaunch up"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("endpoint").exists() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = std::fs::read_to_string(data.join("endpoint")).expect("endpoint");

    // A cluster with both features: its node attests Healthy, with a token.
    tl(
        data,
        &[
            "aks",
            "create",
            "-n",
            "c",
            "-g",
            "rg",
            "--node-count",
            "2",
            "--enable-secure-boot",
            "--enable-vtpm",
        ],
    );
    let sb_nodes = nodes(data, "nodepool1");
    assert_eq!(sb_nodes.len(), 2);
    for n in &sb_nodes {
        assert_eq!(status(n), "Healthy", "{n:#}");
        assert_eq!(n["labels"]["kubernetes.azure.com/secure-boot"], "true");
        assert_eq!(n["labels"]["kubernetes.azure.com/trusted-launch"], "true");
    }
    // The token verifies against the server's JWKS with PyJWT, and carries the node.
    let token = sb_nodes[0]["attestation"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let jwks = ureq_get(&format!("{}/attestation/jwks", endpoint.trim()));
    let script = r#"
import json, sys, jwt
jwks = jwt.PyJWKSet.from_json(sys.argv[1])
kid = jwt.get_unverified_header(sys.argv[2])["kid"]
key = next(k for k in jwks.keys if k.key_id == kid)
print(json.dumps(jwt.decode(sys.argv[2], key.key, algorithms=["ES256"])))
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &jwks, &token])
        .output()
        .expect("python3 (python3-jwt)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).expect("claims");
    assert_eq!(claims["sub"], sb_nodes[0]["name"]);
    assert_eq!(claims["secureboot"], true);
    assert_eq!(claims["tpm"]["present"], true);

    // A vTPM-only pool (3 nodes by default); one node's kernel replaced by a bootkit.
    tl(
        data,
        &[
            "aks",
            "nodepool",
            "add",
            "-g",
            "rg",
            "--cluster-name",
            "c",
            "-n",
            "vtpm",
            "--enable-vtpm",
        ],
    );
    let v_nodes = nodes(data, "vtpm");
    assert_eq!(v_nodes.len(), 3);
    assert!(v_nodes.iter().all(|n| status(n) == "Healthy"));
    assert!(v_nodes.iter().all(|n| n["labels"]
        .get("kubernetes.azure.com/secure-boot")
        .is_none()));
    // No false alert over 20 reboots of unchanged nodes.
    for i in 0..20 {
        let name = v_nodes[i % 3]["name"].as_str().expect("name");
        let n = tl(data, &["node", "reboot", name]);
        assert_eq!(status(&n), "Healthy", "reboot {i}: {n:#}");
    }
    assert_eq!(tl(data, &["alerts", "list"]), serde_json::json!([]));

    let victim = v_nodes[0]["name"].as_str().expect("name");
    tl(data, &["node", "tamper", victim, "--component", "kernel"]);
    let n = tl(data, &["node", "reboot", victim]);
    assert_eq!(status(&n), "Unhealthy", "{n:#}");
    assert!(n["taints"]
        .as_array()
        .expect("taints")
        .iter()
        .any(|t| t["effect"] == "NoSchedule"));
    let alerts = tl(data, &["alerts", "list", "--node", victim]);
    let f = &alerts[0]["failures"][0];
    assert_eq!(f["component"], "kernel", "{alerts:#}");
    assert_eq!(f["reason"], "kernel digest not in baseline");
    assert_eq!(f["pcr"], 4);
    assert_ne!(f["expected"], f["observed"]);
    // The alert reached the webhook.
    let delivered = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the webhook received the alert");
    let delivered: Value = serde_json::from_str(&delivered).expect("alert JSON");
    assert_eq!(delivered["node"], victim, "{delivered:#}");
    assert_eq!(delivered["failures"][0]["component"], "kernel");

    // On a Secure Boot node the tampered kernel does not run at all.
    let sb = sb_nodes[0]["name"].as_str().expect("name");
    tl(data, &["node", "tamper", sb, "--component", "kernel"]);
    let n = tl(data, &["node", "reboot", sb]);
    let ready = n["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("Ready")
        .clone();
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or("")
            .contains("Secure Boot denied kernel (/vmlinuz): digest mismatch"),
        "{ready:#}"
    );

    // Enabling Secure Boot reimages the vTPM pool: fresh disks, all Healthy, labels added.
    tl(
        data,
        &[
            "aks",
            "nodepool",
            "update",
            "-g",
            "rg",
            "--cluster-name",
            "c",
            "-n",
            "vtpm",
            "--enable-secure-boot",
        ],
    );
    for n in nodes(data, "vtpm") {
        assert_eq!(status(&n), "Healthy", "{n:#}");
        assert_eq!(n["labels"]["kubernetes.azure.com/secure-boot"], "true");
        assert!(n["taints"].as_array().expect("taints").is_empty(), "{n:#}");
    }
    drop(server);
}

/// GET a URL (the public JWKS needs no token).
fn ureq_get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
