//! `trustlaunch quickstart`: the product in one command. It builds the node images from
//! Debian's packages (once; cached), starts the server with the embedded backend, and runs
//! the commands an operator would type — each printed before it runs — to show Trusted
//! Launch at work: nodes booted, measured and attested, their labels, an integrity alert
//! naming a tampered kernel, and a rolling reimage back to health.

use super::up::EmbeddedServer;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where the demo keeps its state (server database, vTPMs, node disks); a fresh
    /// temporary directory by default.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where the node images are built and cached (lab/build-node-image.sh WORKDIR).
    #[arg(long, value_name = "DIR")]
    lab_dir: Option<PathBuf>,
    /// Leave the server running at the end (its URL and data directory are printed).
    #[arg(long)]
    keep: bool,
}

/// The repository's lab scripts (the binary is run from the repository: `cargo run`).
fn lab_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab")
}

fn say(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

/// Run `trustlaunch LINE` as the operator would (one argument per word), showing the
/// command and its output.
fn tl(server: &EmbeddedServer, line: &str) -> Result<String> {
    println!("$ trustlaunch {line}");
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = server.run(&args)?;
    print!("{out}");
    std::io::stdout().flush()?;
    Ok(out)
}

/// `trustlaunch LINE -o json`, quietly, as JSON.
fn json(server: &EmbeddedServer, line: &str) -> Result<serde_json::Value> {
    let args: Vec<&str> = line.split_whitespace().collect();
    server.json(&args)
}

/// The first node of a pool (its name).
fn first_node(server: &EmbeddedServer, pool: &str) -> Result<String> {
    let v = json(
        server,
        &format!("aks nodepool list-nodes -g demo-rg --cluster-name demo --name {pool}"),
    )?;
    v.get(0)
        .and_then(|n| n["name"].as_str())
        .map(str::to_string)
        .context("the pool has no nodes")
}

pub fn run(a: QuickstartArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let temp;
    let data_dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("trustlaunch-quickstart-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&data_dir)?;
    let lab = a.lab_dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache/trustlaunch/lab")
    });

    say("1. Node images from Debian's packages (shim-signed, grub-efi-amd64-signed, the signed kernel and its modules; cached after the first run)");
    let status = Command::new("bash")
        .arg(lab_scripts().join("build-node-image.sh"))
        .arg(&lab)
        .status()
        .context("running lab/build-node-image.sh")?;
    if !status.success() {
        bail!("lab/build-node-image.sh {} failed", lab.display());
    }
    let images = lab.join("images");

    say("2. The server: control plane (AKS-shaped API), registrar and verifier, and the embedded node host (virtual UEFI firmware + a vTPM per node)");
    let server = EmbeddedServer::start(&data_dir, &images)?;
    let endpoint = data_dir.join(super::up::ENDPOINT_FILE);
    println!(
        "server at {} (data in {})",
        std::fs::read_to_string(&endpoint)?.trim(),
        data_dir.display()
    );

    say("3. A cluster whose first pool has Secure Boot and a vTPM: its node boots, is measured into its own vTPM, enrolls its EK/AK and attests");
    tl(&server, "aks create --name demo --resource-group demo-rg --node-count 1 --enable-secure-boot --enable-vtpm -o table")?;
    tl(
        &server,
        "aks nodepool list-nodes -g demo-rg --cluster-name demo --name nodepool1 -o table",
    )?;

    say("4. A second pool, vTPM only (measured boot and attestation, no Secure Boot), three nodes by default");
    tl(
        &server,
        "aks nodepool add -g demo-rg --cluster-name demo --name measured --enable-vtpm -o table",
    )?;
    tl(
        &server,
        "aks nodepool list-nodes -g demo-rg --cluster-name demo --name measured -o table",
    )?;
    println!("Their labels, for pods' nodeSelector (kubernetes.azure.com/trusted-launch=true, …/secure-boot=true):");
    let nodes = json(
        &server,
        "aks nodepool list-nodes -g demo-rg --cluster-name demo --name nodepool1",
    );
    if let Ok(v) = nodes {
        if let Some(labels) = v.get(0).and_then(|n| n["labels"].as_object()) {
            for (k, val) in labels.iter().filter(|(k, _)| {
                k.contains("trusted-launch")
                    || k.contains("secure-boot")
                    || k.contains("security-type")
            }) {
                println!("  {k}={}", val.as_str().unwrap_or(""));
            }
        }
    }

    say("5. A bootkit replaces the kernel on one vTPM-only node; the node reboots: attestation fails and the alert names the kernel");
    let victim = first_node(&server, "measured")?;
    tl(
        &server,
        &format!("node tamper {victim} --component kernel -o table"),
    )?;
    tl(&server, &format!("node reboot {victim} -o table"))?;
    tl(&server, "alerts list -o table")?;
    let v = json(&server, "alerts list").unwrap_or_default();
    if let Some(f) = v.get(0).and_then(|a| a["failures"].get(0)) {
        println!(
            "  {} (PCR {}): expected {}, observed {}",
            f["reason"].as_str().unwrap_or(""),
            f["pcr"],
            f["expected"].as_str().unwrap_or(""),
            f["observed"].as_str().unwrap_or("")
        );
    }

    say("6. The same tampered kernel on a Secure Boot node never runs: the firmware chain refuses it and names it");
    let sb = first_node(&server, "nodepool1")?;
    tl(
        &server,
        &format!("node tamper {sb} --component kernel -o table"),
    )?;
    let node = json(&server, &format!("node reboot {sb}")).unwrap_or_default();
    if let Some(c) = node["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
    {
        println!(
            "  Ready={}: {}",
            c["status"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or("")
        );
    }

    say("7. Enabling Secure Boot on the vTPM-only pool reimages it, node by node: fresh disks, measured and attested again");
    tl(&server, "aks nodepool update -g demo-rg --cluster-name demo --name measured --enable-secure-boot -o table")?;
    tl(
        &server,
        "aks nodepool list-nodes -g demo-rg --cluster-name demo --name measured -o table",
    )?;
    let first_alert = v
        .get(0)
        .and_then(|a| a["id"].as_u64())
        .unwrap_or(1)
        .to_string();
    tl(&server, &format!("alerts ack {first_alert} -o table"))?;

    say(&format!("Done in {:.1} s", started.elapsed().as_secs_f64()));
    if a.keep {
        println!(
            "The server keeps running (pid {}); its data is in {}.",
            server.detach(),
            data_dir.display()
        );
        if let Some(t) = temp_keep(a.data_dir.is_none()) {
            println!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn temp_keep(temporary: bool) -> Option<&'static str> {
    temporary.then_some("(the temporary data directory is removed when this command exits; use --data-dir to keep it)")
}
