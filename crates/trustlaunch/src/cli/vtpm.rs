//! `trustlaunch vtpm …` (stub, to be written).
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum VtpmCommand {
    /// Serve a vTPM over the swtpm socket protocol.
    Socket,
}

pub fn run(_cmd: VtpmCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
