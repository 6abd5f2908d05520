//! End to end through the CLI against a real `trustlaunch up`, on SQLite and on PostgreSQL
//! (records-only backend) and on the embedded backend (every node really boots into its own
//! vTPM and attests Healthy): create → nodepool add → update enabling both features (rolling
//! reimage, labels appear) → disable Secure Boot (its label goes) → (embedded) a tampered
//! kernel on a vTPM-only node raises an alert naming the kernel and taints the node → real
//! kubectl selects exactly the right nodes through the kubeconfig `get-credentials` wrote →
//! delete. And a SIGKILL in the middle of a rolling
//! reimage: the restarted server resumes and completes it, losing and stranding no node.

mod control_plane;
mod ports;

use control_plane::{labels, sh, Server, EXE};
use serde_json::Value;
use std::process::Command;

const TL: &str = "kubernetes.azure.com/trusted-launch";
const SB: &str = "kubernetes.azure.com/secure-boot";
const ST: &str = "kubernetes.azure.com/security-type";

fn nodes(s: &Server, pool: &str) -> Vec<Value> {
    let v = s.ok(&sh(&format!(
        "nodepool list-nodes -g rg --cluster-name c1 -n {pool}"
    )));
    v.as_array().cloned().unwrap_or_default()
}

fn kubectl_names(kubeconfig: &str, selector: &str) -> Vec<String> {
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            kubeconfig,
            "get",
            "nodes",
            "-o",
            "name",
            "-l",
            selector,
        ])
        .output()
        .expect("kubectl must be installed (scripts/test.sh installs kubernetes-client)");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("node/").to_string())
        .collect();
    names.sort();
    names
}

fn names(nodes: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = nodes
        .iter()
        .map(|n| n["name"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}

/// The flow. `embedded`: the server runs the embedded backend (real boots into
/// vTPMs, attestation), so nodes attest Healthy and a tampered kernel is caught.
fn lifecycle(s: Server, embedded: bool) {
    let expected = if embedded { "Healthy" } else { "Pending" };
    let c = s.ok(&sh(
        "create -g rg -n c1 --node-count 1 --enable-secure-boot --enable-vtpm --generate-ssh-keys",
    ));
    assert_eq!(c["provisioningState"], "Succeeded");
    let system = nodes(&s, "nodepool1");
    assert_eq!(system.len(), 1);
    for key in [TL, SB] {
        assert_eq!(labels(&system[0])[key], "true");
    }
    assert_eq!(labels(&system[0])[ST], "TrustedLaunch");

    let pool = s.ok(&sh("nodepool add -g rg --cluster-name c1 -n mynodepool"));
    assert_eq!(pool["count"], 3);
    let before = nodes(&s, "mynodepool");
    assert_eq!(before.len(), 3);
    for n in &before {
        for key in [TL, SB, ST] {
            assert!(
                !labels(n).contains_key(key),
                "{key} on a pool with both features off"
            );
        }
        assert_eq!(
            n["nodeImageVersion"],
            "AKSUbuntu-2204gen2TLcontainerd-202411.01.0"
        );
    }

    let pool = s.ok(&sh("nodepool update -g rg --cluster-name c1 -n mynodepool --enable-secure-boot --enable-vtpm --max-surge 2"));
    assert_eq!(pool["securityProfile"]["enableSecureBoot"], true);
    assert_eq!(pool["securityProfile"]["enableVTPM"], true);
    assert_eq!(pool["upgradeSettings"]["maxSurge"], "2");
    let after = nodes(&s, "mynodepool");
    assert_eq!(names(&after), names(&before), "reimage keeps the nodes");
    for n in &after {
        assert_eq!(n["bootCount"], 2, "every node booted again: {n:#}");
        assert_eq!(n["cordoned"], false);
        assert_eq!(labels(n)[TL], "true");
        assert_eq!(labels(n)[SB], "true");
        assert_eq!(labels(n)[ST], "TrustedLaunch");
        assert_eq!(n["securityProfile"]["enableSecureBoot"], true);
        assert_eq!(n["attestation"]["status"], expected, "{n:#}");
    }

    s.ok(&sh(
        "nodepool update -g rg --cluster-name c1 -n mynodepool --disable-secure-boot",
    ));
    let vtpm_only = nodes(&s, "mynodepool");
    for n in &vtpm_only {
        assert!(
            !labels(n).contains_key(SB),
            "secure-boot label must go: {n:#}"
        );
        assert_eq!(labels(n)[TL], "true");
        assert_eq!(labels(n)[ST], "TrustedLaunch");
        assert_eq!(n["bootCount"], 3);
    }
    // An update that changes nothing the nodes run does not reimage them.
    s.ok(&sh(
        "nodepool update -g rg --cluster-name c1 -n mynodepool --disable-secure-boot",
    ));
    assert!(nodes(&s, "mynodepool").iter().all(|n| n["bootCount"] == 3));

    if embedded {
        // A bootkit replaces the kernel of a vTPM-only node: its next boot raises an
        // integrity alert naming the kernel, and the node is tainted NoSchedule.
        let victim = vtpm_only[0]["name"].as_str().expect("name").to_string();
        let run = |args: &[&str]| -> Value {
            let out = Command::new(EXE)
                .args(args)
                .args(["-o", "json"])
                .env("TRUSTLAUNCH_DATA_DIR", &s.dir)
                .env_remove("TRUSTLAUNCH_ENDPOINT")
                .env_remove("TRUSTLAUNCH_TOKEN")
                .output()
                .expect("trustlaunch");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
        };
        run(&["node", "tamper", &victim, "--component", "kernel"]);
        let n = run(&["node", "reboot", &victim]);
        assert_eq!(n["attestation"]["status"], "Unhealthy", "{n:#}");
        assert!(n["taints"]
            .as_array()
            .expect("taints")
            .iter()
            .any(|t| t["effect"] == "NoSchedule"));
        let alerts = run(&["alerts", "list", "--node", &victim]);
        assert_eq!(
            alerts[0]["failures"][0]["component"], "kernel",
            "{alerts:#}"
        );
        assert_eq!(
            alerts[0]["failures"][0]["reason"],
            "kernel digest not in baseline"
        );
    }

    let kubeconfig = control_plane::temp_path(&s.dir, "kube/config");
    let out = s.aks(&sh(&format!(
        "get-credentials -g rg -n c1 --file {kubeconfig}"
    )));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Merged \"c1\" as current context in {kubeconfig}\n")
    );
    assert_eq!(
        kubectl_names(&kubeconfig, &format!("{SB}=true")),
        names(&system)
    );
    let all_tl = names(&[system.clone(), vtpm_only.clone()].concat());
    assert_eq!(kubectl_names(&kubeconfig, &format!("{TL}=true")), all_tl);
    assert_eq!(
        kubectl_names(&kubeconfig, &format!("{ST}=TrustedLaunch")),
        all_tl
    );
    assert_eq!(
        kubectl_names(&kubeconfig, &format!("{SB}=true,agentpool=mynodepool")),
        Vec::<String>::new()
    );
    assert_eq!(
        kubectl_names(&kubeconfig, &format!("!{SB}")),
        names(&vtpm_only)
    );

    // Scaling adds nodes at new ordinals (with the pool's labels) and removes the highest
    // ones; the others are not touched.
    s.ok(&sh(
        "nodepool scale -g rg --cluster-name c1 -n mynodepool --node-count 5",
    ));
    let five = nodes(&s, "mynodepool");
    let ordinals: Vec<u64> = five.iter().filter_map(|n| n["ordinal"].as_u64()).collect();
    assert_eq!(ordinals, [0, 1, 2, 3, 4]);
    // (On the embedded backend the tampered node was rebooted once more.)
    let tampered = u64::from(embedded);
    assert_eq!(
        five.iter()
            .take(3)
            .filter_map(|n| n["bootCount"].as_u64())
            .sum::<u64>(),
        9 + tampered
    );
    assert!(five
        .iter()
        .skip(3)
        .all(|n| n["bootCount"] == 1 && labels(n)[TL] == "true" && !labels(n).contains_key(SB)));
    let pool = s.ok(&sh(
        "nodepool scale -g rg --cluster-name c1 -n mynodepool --node-count 2",
    ));
    assert_eq!(pool["count"], 2);
    let two = nodes(&s, "mynodepool");
    assert_eq!(names(&two), names(&five[..2]));

    s.ok(&sh("nodepool delete -g rg --cluster-name c1 -n mynodepool"));
    let gone = s.aks(&sh(
        "nodepool list-nodes -g rg --cluster-name c1 -n mynodepool",
    ));
    assert_eq!(gone.status.code(), Some(4));
    s.ok(&sh("delete -g rg -n c1 --yes"));
    assert_eq!(s.ok(&["list"]), Value::Array(vec![]));
}

#[test]
fn lifecycle_on_sqlite() {
    lifecycle(Server::start(None, &["--backend", "records"]), false);
}

#[test]
fn lifecycle_on_postgres() {
    lifecycle(
        Server::start(
            Some(control_plane::fresh_postgres()),
            &["--backend", "records"],
        ),
        false,
    );
}

/// The same flow on the embedded backend: every node really boots (virtual firmware, its
/// own vTPM) and attests; the tampered kernel is caught.
#[test]
fn lifecycle_on_the_embedded_backend() {
    let lab = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache");
    let built = Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/build-node-image.sh"))
        .arg(&lab)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("lab/build-node-image.sh");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let images = lab.join("images");
    let images = images.to_str().expect("UTF-8 path");
    lifecycle(
        Server::start(None, &["--backend", "embedded", "--images", images]),
        true,
    );
}

fn resume_after_sigkill(database: Option<String>) {
    let mut s = Server::start(database, &["--simulate-boot-ms", "300"]);
    s.ok(&sh("create -g rg -n c1 --node-count 1"));
    s.ok(&sh(
        "nodepool add -g rg --cluster-name c1 -n np --node-count 4 --max-surge 1",
    ));
    let out = s.aks(&sh(
        "nodepool update -g rg --cluster-name c1 -n np --enable-vtpm --no-wait",
    ));
    assert!(out.status.success());
    // Wait until the rolling reimage is under way (one node done, the others not), checking
    // that no more than max-surge nodes are ever out of service.
    s.until(
        &sh("nodepool list-nodes -g rg --cluster-name c1 -n np"),
        60,
        |v| {
            let a = v.as_array().cloned().unwrap_or_default();
            let cordoned = a.iter().filter(|n| n["cordoned"] == true).count();
            assert!(cordoned <= 1, "max surge 1 but {cordoned} nodes cordoned");
            let reimaged = a.iter().filter(|n| n["bootCount"] == 2).count();
            (1..4).contains(&reimaged)
        },
    );
    s.restart();
    assert!(
        s.banner
            .iter()
            .any(|l| l.trim() == "resumed:   1 unfinished operation(s)"),
        "{:#?}",
        s.banner
    );
    let pool = s.until(
        &sh("nodepool show -g rg --cluster-name c1 -n np"),
        60,
        |p| p["provisioningState"] != "Updating",
    );
    assert_eq!(pool["provisioningState"], "Succeeded", "{pool:#}");
    let after = nodes(&s, "np");
    assert_eq!(after.len(), 4, "no node lost");
    for n in &after {
        assert_eq!(n["cordoned"], false, "no node left cordoned: {n:#}");
        assert!(
            n["bootCount"].as_u64() >= Some(2),
            "every node reimaged: {n:#}"
        );
        assert_eq!(labels(n)[TL], "true");
    }
}

#[test]
fn sigkill_during_rolling_reimage_resumes_on_sqlite() {
    resume_after_sigkill(None);
}

#[test]
fn sigkill_during_rolling_reimage_resumes_on_postgres() {
    resume_after_sigkill(Some(control_plane::fresh_postgres()));
}
