//! A node's vTPM driven in process, as its firmware drives it: an engine with no state on
//! disk (the default), or a vTPM instance in a state directory (kept across boots), spoken to
//! through the node agent's TPM client (`crates/agent`).

use crate::{Error, Result};
use agent::{Client, Transport};
use eventlog::AlgorithmId;
use std::path::Path;
use tpm::hash::HashAlg;
use vtpm::{Endorsement, Instance, Log, StateDir};

/// Where the commands go: the engine itself, or a vTPM instance (state kept on disk).
pub enum LocalTpm {
    Engine(Box<tpm::Tpm>),
    Instance(Box<Instance>),
}

impl Transport for LocalTpm {
    fn transmit(&mut self, command: &[u8]) -> std::result::Result<Vec<u8>, String> {
        Ok(match self {
            LocalTpm::Engine(t) => t.execute(0, command),
            LocalTpm::Instance(i) => i.execute(Some(0), command),
        })
    }
}

/// The node's TPM, powered on and started.
pub struct NodeTpm {
    client: Client<LocalTpm>,
    banks: Vec<AlgorithmId>,
}

impl NodeTpm {
    /// A fresh TPM in memory (new seeds each time), started.
    pub fn ephemeral() -> Result<NodeTpm> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| Error::Tpm(format!("randomness for the TPM's seeds: {e}")))?;
        let mut tpm = tpm::Tpm::manufacture(&seed);
        tpm.init();
        Self::started(LocalTpm::Engine(Box::new(tpm)))
    }

    /// The vTPM kept in `dir` (manufactured there on first use, endorsed as `endorsement`
    /// says), reset and started as a machine's power-on does.
    pub fn persistent(dir: &Path, endorsement: &Endorsement) -> Result<NodeTpm> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        let state = StateDir::open(dir)
            .map_err(|e| Error::Tpm(format!("opening vTPM state {}: {e}", dir.display())))?;
        let instance = Instance::open_with(state, Log::stderr(0, None), endorsement)
            .map_err(|e| Error::Tpm(format!("opening the vTPM in {}: {e}", dir.display())))?;
        instance
            .init()
            .map_err(|e| Error::Tpm(format!("_TPM_Init: {e}")))?;
        Self::started(LocalTpm::Instance(Box::new(instance)))
    }

    /// The node agent's view of this TPM.
    pub fn client(&mut self) -> &mut Client<LocalTpm> {
        &mut self.client
    }

    fn started(tpm: LocalTpm) -> Result<NodeTpm> {
        let mut client = Client::new(tpm);
        client
            .startup_clear()
            .map_err(|e| Error::Tpm(e.to_string()))?;
        let banks = client
            .pcr_banks()
            .map_err(|e| Error::Tpm(e.to_string()))?
            .into_iter()
            .map(AlgorithmId)
            .collect();
        Ok(NodeTpm { client, banks })
    }

    /// Every PCR of every bank, as `<bank> <pcr> <hex>` lines.
    pub fn pcr_lines(&mut self) -> Result<String> {
        let mut out = String::new();
        for bank in self.banks.clone() {
            let name = bank.name().unwrap_or("unknown");
            let alg = HashAlg::from_id(bank.0)
                .ok_or_else(|| Error::Tpm("a PCR bank of an unknown algorithm".into()))?;
            for pcr in 0..24 {
                let v = self
                    .client
                    .pcr_read(alg, pcr)
                    .map_err(|e| Error::Tpm(e.to_string()))?;
                out.push_str(&format!("{name} {pcr} {}\n", hex::encode(v)));
            }
        }
        Ok(out)
    }
}

impl firmware::Pcrs for NodeTpm {
    fn banks(&self) -> Vec<AlgorithmId> {
        self.banks.clone()
    }

    fn extend(
        &mut self,
        pcr: u32,
        digests: &[(AlgorithmId, Vec<u8>)],
    ) -> std::result::Result<(), String> {
        let digests: Vec<(u16, Vec<u8>)> = digests.iter().map(|(a, d)| (a.0, d.clone())).collect();
        self.client
            .pcr_extend(pcr, &digests)
            .map_err(|e| e.to_string())
    }
}
