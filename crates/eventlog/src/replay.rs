//! Replaying a log: the PCR values it claims, per bank (TPM 2.0 Part 1, 17.7: new = H(old ||
//! digest)), with PCR 0 starting from the Startup Locality (PFP 10.4.5.3). Banks this crate
//! cannot hash are reported as such, never guessed.

use std::collections::BTreeMap;

use crate::error::{Error, Problem};
use crate::{AlgorithmId, EventLog};

/// PCRs a PC Client TPM has (PTP 3.7.1): an extend into another index is an error.
pub const PCR_COUNT: u32 = 24;

/// One bank's replayed PCRs: only those the log extends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bank {
    pub alg: AlgorithmId,
    pub pcrs: BTreeMap<u32, Vec<u8>>,
}

/// Every bank's replayed PCRs, in the log's bank order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pcrs {
    pub banks: Vec<Bank>,
    /// Banks the log records that this crate cannot hash (not replayed).
    pub unsupported: Vec<AlgorithmId>,
}

impl Pcrs {
    /// The replayed value of `pcr` in bank `alg` (None if the log never extends it).
    pub fn get(&self, alg: AlgorithmId, pcr: u32) -> Option<&[u8]> {
        self.banks
            .iter()
            .find(|b| b.alg == alg)
            .and_then(|b| b.pcrs.get(&pcr))
            .map(Vec::as_slice)
    }
}

impl EventLog {
    /// The PCR values this log claims. An event without a digest for some bank does not
    /// extend that bank (as tpm2_eventlog replays).
    pub fn replay(&self) -> Result<Pcrs, Error> {
        let locality = self.startup_locality().map_or(0, |l| l.0);
        let mut out = Pcrs::default();
        for alg in self.banks() {
            let Some(size) = alg.hash(b"").map(|d| d.len()) else {
                out.unsupported.push(alg);
                continue;
            };
            let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            for (index, e) in self.events.iter().enumerate() {
                if !e.is_extended() {
                    continue;
                }
                let Some(digest) = e.digest(alg) else {
                    continue;
                };
                if e.pcr >= PCR_COUNT {
                    return Err(Error::Parse {
                        event: index,
                        offset: e.offset,
                        problem: Problem::Invalid {
                            what: "pcrIndex",
                            detail: "above 23 in an extended event",
                        },
                    });
                }
                let value = pcrs.entry(e.pcr).or_insert_with(|| {
                    let mut v = vec![0u8; size];
                    if e.pcr == 0 {
                        if let Some(last) = v.last_mut() {
                            *last = locality;
                        }
                    }
                    v
                });
                if let Some(next) = alg.hash_parts(&[value, digest]) {
                    *value = next;
                }
            }
            out.banks.push(Bank { alg, pcrs });
        }
        Ok(out)
    }
}
