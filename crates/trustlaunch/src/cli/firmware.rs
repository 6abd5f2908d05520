//! `trustlaunch firmware boot`: boot a node image with the virtual Generation 2 firmware
//! into a vTPM, and report what ran, what Secure Boot decided, and the PCRs and event log.

use super::node_tpm::NodeTpm;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Largest ESP read into memory (the node image's files).
const MAX_ESP_BYTES: u64 = 1 << 30;

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Boot a node image (an ESP directory) as a Generation 2 UEFI VM with OVMF, shim and
    /// grub would: Secure Boot enforced, every step measured into the vTPM.
    ///
    /// ESP_DIR holds EFI/BOOT/BOOTX64.EFI (shim), EFI/BOOT/grubx64.efi, the grub.cfg that
    /// grub's prefix names (EFI/debian/grub.cfg for Debian's grub), the kernel and initrd it
    /// loads, and optionally kernel modules under modules/*.ko that the booted kernel loads.
    ///
    /// Exit status: 0 booted; 1 the boot stopped (a Secure Boot denial or a missing or broken
    /// component, named on stderr); 2 usage or I/O error.
    Boot(BootArgs),
}

#[derive(Debug, Args)]
pub struct BootArgs {
    /// The node image: the EFI system partition's files.
    #[arg(value_name = "ESP_DIR")]
    esp: PathBuf,
    /// The firmware's variable store (an OVMF_VARS .fd: PK, KEK, db, dbx, MokList...).
    #[arg(long, value_name = "OVMF_VARS.fd")]
    vars: PathBuf,
    /// Keep the vTPM in this state directory (created if missing); by default the vTPM is
    /// an in-process instance that ends with the command.
    #[arg(long, value_name = "DIR")]
    vtpm_state: Option<PathBuf>,
    /// Write the TCG event log (OVMF's binary format) here.
    #[arg(long, value_name = "FILE")]
    eventlog_out: Option<PathBuf>,
    /// Write every PCR of every bank here, one `<bank> <pcr> <hex>` line each.
    #[arg(long, value_name = "FILE")]
    pcrs_out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: FirmwareCommand) -> Result<ExitCode> {
    let result = match cmd {
        FirmwareCommand::Boot(a) => boot(&a),
    };
    // Usage and I/O errors are exit 2, so that 1 always means "the boot stopped".
    Ok(result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    }))
}

/// Read every file under `dir` into a node image (paths relative to `dir`).
pub fn read_esp(dir: &Path) -> Result<firmware::NodeImage> {
    if !dir.is_dir() {
        bail!("ESP_DIR {}: not a directory", dir.display());
    }
    let mut image = firmware::NodeImage::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                total += entry.metadata()?.len();
                if total > MAX_ESP_BYTES {
                    bail!(
                        "ESP_DIR {}: more than {MAX_ESP_BYTES} bytes of files",
                        dir.display()
                    );
                }
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                image.insert(&rel.to_string_lossy(), bytes);
            }
        }
    }
    Ok(image)
}

fn boot(a: &BootArgs) -> Result<ExitCode> {
    let image = read_esp(&a.esp)?;
    let vars = std::fs::read(&a.vars).with_context(|| format!("--vars {}", a.vars.display()))?;
    let mut tpm = match &a.vtpm_state {
        Some(dir) => NodeTpm::persistent(dir)?,
        None => NodeTpm::ephemeral()?,
    };
    let report = firmware::boot(&image, &vars, &mut tpm)
        .with_context(|| format!("--vars {}", a.vars.display()))?;
    if let Some(path) = &a.eventlog_out {
        std::fs::write(path, &report.event_log)
            .with_context(|| format!("--eventlog-out {}", path.display()))?;
    }
    if let Some(path) = &a.pcrs_out {
        std::fs::write(path, tpm.pcr_lines()?)
            .with_context(|| format!("--pcrs-out {}", path.display()))?;
    }
    if a.json {
        let components: Vec<_> = report
            .components
            .iter()
            .map(|c| {
                serde_json::json!({"component": c.name, "path": c.path, "sha256": c.sha256,
                    "authority": c.authority})
            })
            .collect();
        let stopped = report.stopped.as_ref().map(|s| {
            serde_json::json!({"component": s.component, "path": s.path, "reason": s.reason,
                "security_violation": s.security_violation})
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "booted": report.booted(),
                "secure_boot": report.secure_boot,
                "components": components,
                "stopped": stopped,
            }))?
        );
    } else {
        println!(
            "Secure Boot: {}",
            if report.secure_boot {
                "enabled"
            } else {
                "disabled"
            }
        );
        for c in &report.components {
            let by = c
                .authority
                .as_deref()
                .map(|a| format!("  allowed by {a}"))
                .unwrap_or_default();
            println!("  {:<10} {:<28} sha256:{}{by}", c.name, c.path, c.sha256);
        }
    }
    match &report.stopped {
        None => {
            if !a.json {
                println!("booted");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(stop) => {
            eprintln!("trustlaunch firmware boot: {stop}");
            Ok(ExitCode::from(1))
        }
    }
}
