//! `trustlaunch bench …` (stub, to be written).
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// vTPM throughput against swtpm through tpm2-tss's swtpm TCTI.
    Vtpm,
}

pub fn run(_cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
