//! A node's vTPM driven in process, as its firmware drives it: an engine with no state on
//! disk (the default), or a vTPM instance in a state directory (kept across boots). Only
//! the commands firmware needs: _TPM_Init, Startup, GetCapability(PCRS), PCR_Extend,
//! PCR_Read.

use anyhow::{bail, Context, Result};
use eventlog::AlgorithmId;
use std::path::Path;
use vtpm::{Instance, Log, StartupType, StateDir};

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_PCR_EXTEND: u32 = 0x182;
const TPM_CC_PCR_READ: u32 = 0x17E;
const TPM_CC_GET_CAPABILITY: u32 = 0x17A;
const TPM_CAP_PCRS: u32 = 5;
const TPM_RS_PW: u32 = 0x4000_0009;

enum Backend {
    Engine(Box<tpm::Tpm>),
    Instance(Box<Instance>),
}

/// The node's TPM, powered on and started.
pub struct NodeTpm {
    backend: Backend,
    banks: Vec<AlgorithmId>,
}

fn command(tag: u16, cc: u32, body: &[u8]) -> Vec<u8> {
    let mut out = tag.to_be_bytes().to_vec();
    out.extend_from_slice(
        &u32::try_from(10 + body.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&cc.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn rc(response: &[u8]) -> u32 {
    response
        .get(6..10)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(u32::MAX)
}

impl NodeTpm {
    /// A fresh TPM in memory (new seeds each time), started.
    pub fn ephemeral() -> Result<NodeTpm> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).context("randomness for the TPM's seeds")?;
        let mut tpm = tpm::Tpm::manufacture(&seed);
        tpm.init();
        Self::started(Backend::Engine(Box::new(tpm)))
    }

    /// The vTPM kept in `dir` (manufactured there on first use), reset and started as a
    /// machine's power-on does.
    pub fn persistent(dir: &Path) -> Result<NodeTpm> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let state =
            StateDir::open(dir).with_context(|| format!("opening vTPM state {}", dir.display()))?;
        let instance = Instance::open(state, Log::stderr(0, None)).context("opening the vTPM")?;
        instance.init().context("_TPM_Init")?;
        Self::started(Backend::Instance(Box::new(instance)))
    }

    fn started(backend: Backend) -> Result<NodeTpm> {
        let mut t = NodeTpm {
            backend,
            banks: Vec::new(),
        };
        let r = t.execute(&StartupType::Clear.command());
        if rc(&r) != 0 {
            bail!("TPM2_Startup(CLEAR) failed: TPM_RC {:#x}", rc(&r));
        }
        t.banks = t.read_banks()?;
        Ok(t)
    }

    fn execute(&mut self, cmd: &[u8]) -> Vec<u8> {
        match &mut self.backend {
            Backend::Engine(t) => t.execute(0, cmd),
            Backend::Instance(i) => i.execute(Some(0), cmd),
        }
    }

    /// TPM2_GetCapability(TPM_CAP_PCRS): the banks with any PCR allocated.
    fn read_banks(&mut self) -> Result<Vec<AlgorithmId>> {
        let mut body = TPM_CAP_PCRS.to_be_bytes().to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&16u32.to_be_bytes());
        let r = self.execute(&command(TPM_ST_NO_SESSIONS, TPM_CC_GET_CAPABILITY, &body));
        if rc(&r) != 0 {
            bail!("TPM2_GetCapability(PCRS) failed: TPM_RC {:#x}", rc(&r));
        }
        // moreData, capability, TPML_PCR_SELECTION { count, { hash, sizeofSelect, bits } }.
        let mut at = 10 + 1 + 4;
        let count = r
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .context("short GetCapability response")?;
        at += 4;
        let mut banks = Vec::new();
        for _ in 0..count.min(16) {
            let alg = r
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .context("short GetCapability response")?;
            let size = usize::from(*r.get(at + 2).context("short GetCapability response")?);
            let bits = r
                .get(at + 3..at + 3 + size)
                .context("short GetCapability response")?;
            if bits.iter().any(|b| *b != 0) {
                banks.push(AlgorithmId(alg));
            }
            at += 3 + size;
        }
        Ok(banks)
    }

    /// TPM2_PCR_Read of one PCR in one bank.
    pub fn read(&mut self, bank: AlgorithmId, pcr: u32) -> Result<Vec<u8>> {
        let mut select = [0u8; 3];
        if let Some(b) = select.get_mut((pcr / 8) as usize) {
            *b = 1 << (pcr % 8);
        }
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend_from_slice(&bank.0.to_be_bytes());
        body.push(3);
        body.extend_from_slice(&select);
        let r = self.execute(&command(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ, &body));
        if rc(&r) != 0 {
            bail!("TPM2_PCR_Read failed: TPM_RC {:#x}", rc(&r));
        }
        // updateCounter, TPML_PCR_SELECTION (count + one selection of 6 bytes), TPML_DIGEST.
        let at = 10 + 4 + 4 + 6;
        let n = r
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .context("short PCR_Read response")?;
        if n != 1 {
            bail!("PCR_Read returned {n} digests for one PCR");
        }
        let size = r
            .get(at + 4..at + 6)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .context("short PCR_Read response")?;
        Ok(r.get(at + 6..at + 6 + size)
            .context("short PCR_Read response")?
            .to_vec())
    }

    /// Every PCR of every bank, as `<bank> <pcr> <hex>` lines.
    pub fn pcr_lines(&mut self) -> Result<String> {
        let mut out = String::new();
        for bank in self.banks.clone() {
            let name = bank.name().unwrap_or("unknown");
            for pcr in 0..24 {
                let v = self.read(bank, pcr)?;
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
        let mut body = pcr.to_be_bytes().to_vec();
        // A password session with an empty password (PCRs 0-15 have an empty auth value).
        body.extend_from_slice(&9u32.to_be_bytes());
        body.extend_from_slice(&TPM_RS_PW.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0]);
        body.extend_from_slice(&u32::try_from(digests.len()).unwrap_or(0).to_be_bytes());
        for (alg, d) in digests {
            body.extend_from_slice(&alg.0.to_be_bytes());
            body.extend_from_slice(d);
        }
        let r = self.execute(&command(TPM_ST_SESSIONS, TPM_CC_PCR_EXTEND, &body));
        match rc(&r) {
            0 => Ok(()),
            code => Err(format!(
                "TPM2_PCR_Extend(PCR {pcr}) failed: TPM_RC {code:#x}"
            )),
        }
    }
}
