//! Writing a new crypto-agile log event by event, as firmware does (PFP 10.2.2): the Spec ID
//! event first, then TCG_PCR_EVENT2 records whose digests this builder computes for every
//! bank. It never produces a log that [`EventLog::parse`] would refuse.

use crate::error::Error;
use crate::log::{encode_event1, encode_event2, Digest, Event, EventLog, LogFormat};
use crate::spec_id::{SpecIdAlgorithm, SpecIdEvent, StartupLocality};
use crate::{AlgorithmId, EventType};

/// EV_EFI_ACTION data when ExitBootServices() is called (PFP 10.4.1).
pub const EXIT_BOOT_SERVICES_INVOCATION: &[u8] = b"Exit Boot Services Invocation";
/// EV_EFI_ACTION data when ExitBootServices() succeeded (PFP 10.4.1).
pub const EXIT_BOOT_SERVICES_SUCCESS: &[u8] = b"Exit Boot Services Returned with Success";

/// Builds a crypto-agile log. The caller extends its TPM with each returned event's digests
/// (the builder keeps only the log).
///
/// ```
/// use eventlog::{AlgorithmId, EventType, LogBuilder};
/// let mut b = LogBuilder::new(&[AlgorithmId::SHA256], b"").unwrap();
/// b.startup_locality(0);
/// let sep = b.measure(7, EventType::EV_SEPARATOR, &[0, 0, 0, 0]);
/// assert_eq!(sep.digests.len(), 1);
/// let log = eventlog::EventLog::parse(&b.to_bytes()).unwrap();
/// assert_eq!(log.events.len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct LogBuilder {
    log: EventLog,
    /// Length of the log's bytes so far: the next event's offset.
    len: usize,
}

impl LogBuilder {
    /// A log recording `banks` (each must be one this crate can hash: SHA-1, SHA-256,
    /// SHA-384, SHA-512), with the Spec ID event's `vendor_info` (at most 255 bytes).
    pub fn new(banks: &[AlgorithmId], vendor_info: &[u8]) -> Result<Self, Error> {
        if banks.is_empty() {
            return Err(Error::Usage("a log needs at least one bank"));
        }
        if vendor_info.len() > 255 {
            return Err(Error::Usage("vendorInfo is at most 255 bytes"));
        }
        let mut algorithms: Vec<SpecIdAlgorithm> = Vec::new();
        for &alg in banks {
            let Some(size) = alg.hash(b"").map(|d| d.len()) else {
                return Err(Error::Usage("bank algorithm this crate cannot hash"));
            };
            if algorithms.iter().any(|a| a.algorithm_id == alg) {
                return Err(Error::Usage("bank listed twice"));
            }
            algorithms.push(SpecIdAlgorithm {
                algorithm_id: alg,
                digest_size: u16::try_from(size).unwrap_or(u16::MAX),
            });
        }
        // PFP 10.4.5.1: platformClass 0 (client), spec version 2.0 errata 0, UINTN 64-bit.
        let spec = SpecIdEvent {
            platform_class: 0,
            spec_version_minor: 0,
            spec_version_major: 2,
            spec_errata: 0,
            uintn_size: 2,
            algorithms,
            vendor_info: vendor_info.to_vec(),
        };
        let header = Event {
            pcr: 0,
            event_type: EventType::EV_NO_ACTION,
            digests: vec![Digest {
                alg: AlgorithmId::SHA1,
                bytes: vec![0; 20],
            }],
            data: spec.to_bytes(),
            offset: 0,
        };
        let len = encode_event1(&header).len();
        Ok(Self {
            log: EventLog {
                format: LogFormat::CryptoAgile(spec),
                events: vec![header],
                padding: Vec::new(),
            },
            len,
        })
    }

    fn banks(&self) -> Vec<AlgorithmId> {
        self.log.banks()
    }

    /// Appends the event and returns a copy of it (its digests are what the caller extends
    /// its TPM with).
    fn push(&mut self, event: Event) -> Event {
        let event = Event {
            offset: self.len,
            ..event
        };
        self.len = self.len.saturating_add(encode_event2(&event).len());
        self.log.events.push(event.clone());
        event
    }

    /// An EV_NO_ACTION event (not extended; its digests are all zero, PFP 10.4.5).
    pub fn no_action(&mut self, data: &[u8]) -> Event {
        let digests = self
            .log
            .spec_id()
            .map(|s| {
                s.algorithms
                    .iter()
                    .map(|a| Digest {
                        alg: a.algorithm_id,
                        bytes: vec![0; usize::from(a.digest_size)],
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.push(Event {
            pcr: 0,
            event_type: EventType::EV_NO_ACTION,
            digests,
            data: data.to_vec(),
            offset: 0,
        })
    }

    /// The Startup Locality event (PFP 10.4.5.3); log it before any PCR 0 measurement.
    pub fn startup_locality(&mut self, locality: u8) -> Event {
        self.no_action(&StartupLocality(locality).to_bytes())
    }

    /// An event whose digests are the hashes of its own data (separators, EFI actions,
    /// UEFI variables, ...).
    pub fn measure(&mut self, pcr: u32, event_type: EventType, data: &[u8]) -> Event {
        self.measure_other(pcr, event_type, data, data.to_vec())
    }

    /// An event whose digests are the hashes of `measured` while the log records `data`
    /// (firmware volumes: the blob is measured, its address is logged).
    pub fn measure_other(
        &mut self,
        pcr: u32,
        event_type: EventType,
        measured: &[u8],
        data: Vec<u8>,
    ) -> Event {
        let digests = self
            .banks()
            .into_iter()
            .filter_map(|alg| alg.hash(measured).map(|bytes| Digest { alg, bytes }))
            .collect();
        self.push(Event {
            pcr,
            event_type,
            digests,
            data,
            offset: 0,
        })
    }

    /// An event whose digests the caller computed (PE images: the Authenticode hash, one
    /// per bank, in the log's bank order).
    pub fn record(
        &mut self,
        pcr: u32,
        event_type: EventType,
        digests: Vec<Digest>,
        data: Vec<u8>,
    ) -> Result<Event, Error> {
        let banks = self.banks();
        let spec = self.log.spec_id();
        let fits = digests.len() == banks.len()
            && digests.iter().zip(&banks).all(|(d, &alg)| {
                d.alg == alg
                    && spec.and_then(|s| s.digest_size(alg)).map(usize::from) == Some(d.bytes.len())
            });
        if !fits {
            return Err(Error::Usage(
                "digests must be one per bank, in bank order, of the bank's size",
            ));
        }
        if u32::try_from(data.len()).map_or(true, |n| n > crate::MAX_EVENT_DATA) {
            return Err(Error::Usage("event data above MAX_EVENT_DATA"));
        }
        Ok(self.push(Event {
            pcr,
            event_type,
            digests,
            data,
            offset: 0,
        }))
    }

    /// The two EV_EFI_ACTION events of ExitBootServices() in PCR 5 (PFP 3.3.4.6 and
    /// 10.4.1: "Exit Boot Services Invocation", then "Exit Boot Services Returned with
    /// Success"), which firmware logs after the OS may have read the log.
    pub fn exit_boot_services(&mut self) -> [Event; 2] {
        [
            self.measure(5, EventType::EV_EFI_ACTION, EXIT_BOOT_SERVICES_INVOCATION),
            self.measure(5, EventType::EV_EFI_ACTION, EXIT_BOOT_SERVICES_SUCCESS),
        ]
    }

    /// The log so far.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn into_log(self) -> EventLog {
        self.log
    }

    /// The log's bytes, as firmware hands them to the OS.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.log.to_bytes()
    }

    /// An EFI_TCG2_FINAL_EVENTS_TABLE holding the events from index `first` on (those
    /// logged after the OS fetched the log).
    pub fn final_events_table(&self, first: usize) -> Vec<u8> {
        let events = self.log.events.get(first.max(1)..).unwrap_or_default();
        let mut out = 1u64.to_le_bytes().to_vec();
        out.extend_from_slice(&(events.len() as u64).to_le_bytes());
        for e in events {
            out.extend_from_slice(&encode_event2(e));
        }
        out
    }
}
