//! The log itself: TCG_PCR_EVENT (PFP 10.2.1) and TCG_PCR_EVENT2 (PFP 10.2.2) records, read
//! from untrusted bytes with caps on every count and size, and written back byte for byte.
//! It never trusts a length before checking it against what is left.

use crate::error::{Error, Problem};
use crate::reader::{Reader, UintnWidth};
use crate::spec_id::{SpecIdEvent, StartupLocality, MAX_ALGORITHMS};
use crate::{AlgorithmId, EventType};

/// Largest log accepted, in bytes (real logs are tens of KiB; Linux caps its copy lower).
pub const MAX_LOG_SIZE: usize = 16 << 20;
/// Most events accepted in one log.
pub const MAX_EVENTS: usize = 100_000;
/// Largest event data accepted, in bytes.
pub const MAX_EVENT_DATA: u32 = 4 << 20;
/// Most events a Final Events Table may claim.
const MAX_FINAL_EVENTS: u64 = MAX_EVENTS as u64;

/// Size of a TCG_PCR_EVENT header before its data: pcrIndex, eventType, digest, eventSize.
const PCR_EVENT_HEADER: u64 = 4 + 4 + 20 + 4;

/// One digest of an event: TPMT_HA (TPM 2.0 Part 2, 10.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub alg: AlgorithmId,
    pub bytes: Vec<u8>,
}

/// One event. For a SHA-1 log (and the first event of a crypto-agile log) this is a
/// TCG_PCR_EVENT with one SHA-1 digest; otherwise a TCG_PCR_EVENT2 (PFP 10.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// pcrIndex: the PCR the digests were extended into (EV_NO_ACTION: none).
    pub pcr: u32,
    /// eventType. Not covered by any digest: readers must not trust it blindly.
    pub event_type: EventType,
    /// digests (TPML_DIGEST_VALUES), in the order the log has them.
    pub digests: Vec<Digest>,
    /// event: the event data, as logged.
    pub data: Vec<u8>,
    /// Offset of the event in the input it was read from (0 for built events).
    pub offset: usize,
}

impl Event {
    /// The digest of bank `alg`, if the event has one.
    pub fn digest(&self, alg: AlgorithmId) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg == alg)
            .map(|d| d.bytes.as_slice())
    }

    /// Whether the TPM was extended with this event (PFP 10.4.1: EV_NO_ACTION is not).
    pub fn is_extended(&self) -> bool {
        self.event_type != EventType::EV_NO_ACTION
    }
}

/// Which record format the log uses after its first event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    /// Every event is a TCG_PCR_EVENT with a SHA-1 digest (TPM 1.2 style, PFP 10.2.1).
    Sha1,
    /// The first event is a Spec ID event; the rest are TCG_PCR_EVENT2 (PFP 10.2.2).
    CryptoAgile(SpecIdEvent),
}

/// A parsed TCG PC Client event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    pub format: LogFormat,
    /// Every event, the first one (a Spec ID event in crypto-agile logs) included, so that
    /// indexes match tpm2_eventlog's EventNum.
    pub events: Vec<Event>,
    /// Zero bytes after the last event (firmware hands out its whole log area on some
    /// platforms). Kept so that a parsed log writes back byte for byte.
    pub padding: Vec<u8>,
}

impl EventLog {
    /// Parse a whole log: SHA-1 or crypto-agile, decided by the first event's data.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_LOG_SIZE {
            return Err(Reader::new(bytes).error(Problem::TooLarge {
                what: "log size",
                value: bytes.len() as u64,
                cap: MAX_LOG_SIZE as u64,
            }));
        }
        let mut r = Reader::new(bytes);
        let first = read_pcr_event(&mut r)?;
        let spec_id = if first.event_type == EventType::EV_NO_ACTION && first.pcr == 0 {
            // The event data starts after the 32-byte header.
            let mut data = Reader::at(&first.data, first.offset.saturating_add(32), 0);
            SpecIdEvent::parse(&mut data)?
        } else {
            None
        };
        let mut log = EventLog {
            format: spec_id.map_or(LogFormat::Sha1, LogFormat::CryptoAgile),
            events: vec![first],
            padding: Vec::new(),
        };
        while !r.is_empty() {
            if r.rest().iter().all(|&b| b == 0) {
                log.padding = r.rest().to_vec();
                break;
            }
            if log.events.len() >= MAX_EVENTS {
                return Err(r.error(Problem::TooLarge {
                    what: "number of events",
                    value: log.events.len() as u64,
                    cap: MAX_EVENTS as u64,
                }));
            }
            r.event = log.events.len();
            let event = match &log.format {
                LogFormat::Sha1 => read_pcr_event(&mut r)?,
                LogFormat::CryptoAgile(spec) => read_pcr_event2(&mut r, spec)?,
            };
            log.events.push(event);
        }
        Ok(log)
    }

    /// The log's bytes: the exact input for a parsed log.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            match (&self.format, i) {
                (LogFormat::Sha1, _) | (LogFormat::CryptoAgile(_), 0) => {
                    write_pcr_event(&mut out, e)
                }
                (LogFormat::CryptoAgile(_), _) => write_pcr_event2(&mut out, e),
            }
        }
        out.extend_from_slice(&self.padding);
        out
    }

    /// The Spec ID event of a crypto-agile log.
    pub fn spec_id(&self) -> Option<&SpecIdEvent> {
        match &self.format {
            LogFormat::CryptoAgile(s) => Some(s),
            LogFormat::Sha1 => None,
        }
    }

    /// The banks the log records, in its order (SHA-1 alone for a SHA-1 log).
    pub fn banks(&self) -> Vec<AlgorithmId> {
        match &self.format {
            LogFormat::Sha1 => vec![AlgorithmId::SHA1],
            LogFormat::CryptoAgile(s) => s.algorithms.iter().map(|a| a.algorithm_id).collect(),
        }
    }

    /// Width of UINTN fields in this log's event data.
    pub(crate) fn uintn(&self) -> UintnWidth {
        self.spec_id().map(SpecIdEvent::uintn).unwrap_or_default()
    }

    /// The locality of the Startup Locality event (PFP 10.4.5.3), if the log has one before
    /// any measurement into PCR 0.
    pub fn startup_locality(&self) -> Option<StartupLocality> {
        for e in &self.events {
            if e.pcr != 0 {
                continue;
            }
            if e.event_type == EventType::EV_NO_ACTION {
                if let Some(l) = StartupLocality::parse(&e.data) {
                    return Some(l);
                }
            } else {
                return None;
            }
        }
        None
    }

    /// Append the events of an EFI_TCG2_FINAL_EVENTS_TABLE (TCG EFI Protocol Specification
    /// 6.5: UINT64 Version = 1, UINT64 NumberOfEvents, then TCG_PCR_EVENT2 records): the
    /// events firmware logged after the log was read (after ExitBootServices, ...).
    /// `already_in_log` is how many of the table's first events the log already holds (the
    /// table also receives events logged between GetEventLog and ExitBootServices; Linux
    /// records this count when it copies the log). Returns how many events were appended.
    pub fn append_final_events(
        &mut self,
        table: &[u8],
        already_in_log: usize,
    ) -> Result<usize, Error> {
        let LogFormat::CryptoAgile(spec) = &self.format else {
            return Err(Error::Usage(
                "a Final Events Table extends crypto-agile logs only",
            ));
        };
        let mut r = Reader::at(table, 0, self.events.len());
        let version = r.u64("Final Events Table Version")?;
        if version != 1 {
            return Err(r.invalid("Final Events Table Version", "is not 1"));
        }
        let count = r.u64("NumberOfEvents")?;
        let count = r.capped(count, MAX_FINAL_EVENTS, "NumberOfEvents")?;
        let mut appended = Vec::new();
        for i in 0..count {
            let event = read_pcr_event2(&mut r, spec)?;
            if usize::try_from(i).map_or(true, |i| i >= already_in_log) {
                appended.push(event);
            }
            r.event = r.event.saturating_add(1);
        }
        if self.events.len().saturating_add(appended.len()) > MAX_EVENTS {
            return Err(r.error(Problem::TooLarge {
                what: "number of events",
                value: self.events.len().saturating_add(appended.len()) as u64,
                cap: MAX_EVENTS as u64,
            }));
        }
        let n = appended.len();
        self.events.extend(appended);
        Ok(n)
    }
}

/// TCG_PCR_EVENT (PFP 10.2.1).
fn read_pcr_event(r: &mut Reader<'_>) -> Result<Event, Error> {
    let offset = r.offset();
    if (r.remaining() as u64) < PCR_EVENT_HEADER {
        // Report the whole header as the missing piece: clearer than "eventSize".
        return Err(r.error(Problem::Truncated {
            what: "TCG_PCR_EVENT header",
            needed: PCR_EVENT_HEADER,
            available: r.remaining(),
        }));
    }
    let pcr = r.u32("pcrIndex")?;
    let event_type = EventType(r.u32("eventType")?);
    let digest = r.take(20, "SHA-1 digest")?.to_vec();
    let data = read_event_data(r)?;
    Ok(Event {
        pcr,
        event_type,
        digests: vec![Digest {
            alg: AlgorithmId::SHA1,
            bytes: digest,
        }],
        data,
        offset,
    })
}

/// TCG_PCR_EVENT2 (PFP 10.2.2); digest sizes come from the Spec ID event.
fn read_pcr_event2(r: &mut Reader<'_>, spec: &SpecIdEvent) -> Result<Event, Error> {
    let offset = r.offset();
    let pcr = r.u32("pcrIndex")?;
    let event_type = EventType(r.u32("eventType")?);
    let count_at = r.clone();
    let count = r.u32("digests.count")?;
    let count = count_at.capped(count.into(), MAX_ALGORITHMS.into(), "digests.count")?;
    // PFP 10.2.2: one digest per active bank, EV_NO_ACTION included (zeros). An event
    // without any would also be indistinguishable from the zero padding after a log.
    if count == 0 {
        return Err(count_at.invalid("digests.count", "is 0"));
    }
    let mut digests = Vec::new();
    for _ in 0..count {
        let at = r.offset();
        let alg = AlgorithmId(r.u16("hashAlg")?);
        let Some(size) = spec.digest_size(alg) else {
            return Err(Error::Parse {
                event: r.event,
                offset: at,
                problem: Problem::UnknownAlgorithm(alg),
            });
        };
        let bytes = r.take(size.into(), "digest")?.to_vec();
        digests.push(Digest { alg, bytes });
    }
    let data = read_event_data(r)?;
    Ok(Event {
        pcr,
        event_type,
        digests,
        data,
        offset,
    })
}

fn read_event_data(r: &mut Reader<'_>) -> Result<Vec<u8>, Error> {
    let size = r.u32("eventSize")?;
    let size = r.capped(size.into(), MAX_EVENT_DATA.into(), "eventSize")?;
    Ok(r.take(size, "event data")?.to_vec())
}

fn write_u32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
}

fn write_pcr_event(out: &mut Vec<u8>, e: &Event) {
    out.extend_from_slice(&e.pcr.to_le_bytes());
    out.extend_from_slice(&e.event_type.0.to_le_bytes());
    let mut digest = [0u8; 20];
    if let Some(d) = e.digest(AlgorithmId::SHA1) {
        for (slot, b) in digest.iter_mut().zip(d) {
            *slot = *b;
        }
    }
    out.extend_from_slice(&digest);
    write_u32(out, e.data.len());
    out.extend_from_slice(&e.data);
}

fn write_pcr_event2(out: &mut Vec<u8>, e: &Event) {
    out.extend_from_slice(&e.pcr.to_le_bytes());
    out.extend_from_slice(&e.event_type.0.to_le_bytes());
    write_u32(out, e.digests.len());
    for d in &e.digests {
        out.extend_from_slice(&d.alg.0.to_le_bytes());
        out.extend_from_slice(&d.bytes);
    }
    write_u32(out, e.data.len());
    out.extend_from_slice(&e.data);
}

/// Encode one TCG_PCR_EVENT2 (for builders and Final Events Tables).
pub(crate) fn encode_event2(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    write_pcr_event2(&mut out, e);
    out
}

/// Encode one TCG_PCR_EVENT.
pub(crate) fn encode_event1(e: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    write_pcr_event(&mut out, e);
    out
}
