//! The crate's one error type. Parse errors say where (event index, byte offset) and what;
//! rejections say which rule of the attack-resistant readers an event broke, and which event.

use crate::{AlgorithmId, EventType};

/// Everything that can go wrong, in three families: the bytes do not parse ([`Error::Parse`]),
/// the log parses but breaks a rule a verifier relies on ([`Error::Rejected`]), or a caller's
/// request does not fit the log ([`Error::Usage`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed log (or event payload).
    #[error("event {event} at offset {offset}: {problem}")]
    Parse {
        /// Index of the event being read (0 is the first event of the log).
        event: usize,
        /// Byte offset in the input where the problem was found.
        offset: usize,
        problem: Problem,
    },
    /// The log parses but cannot be trusted for the question asked.
    #[error("log rejected: {0}")]
    Rejected(#[from] Rejection),
    /// The caller asked for something this log cannot give (e.g. a bank it does not have).
    #[error("{0}")]
    Usage(&'static str),
}

/// What is wrong with the bytes at a given offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("truncated: {what} needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        needed: u64,
        available: usize,
    },
    #[error("{what} is {value}, above the cap of {cap}")]
    TooLarge {
        what: &'static str,
        value: u64,
        cap: u64,
    },
    #[error("digest algorithm {0} is not in the Spec ID event's list")]
    UnknownAlgorithm(AlgorithmId),
    #[error("malformed Spec ID event: {0}")]
    BadSpecId(&'static str),
    #[error("{what}: {detail}")]
    Invalid {
        what: &'static str,
        detail: &'static str,
    },
}

/// Why a log was rejected by [`crate::validate`] and the readers built on it. Each names the
/// event (index in [`crate::EventLog::events`]) that broke the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The digest of an event whose digest must be the hash of its data is something else:
    /// the data shown is not what was measured.
    #[error("event {event}: {alg} digest is not the hash of the event data")]
    DigestMismatch { event: usize, alg: AlgorithmId },
    /// An event carries a type that its PCR or its content does not allow: the type is not
    /// covered by the digest, so it may have been changed to hide what was measured.
    #[error("event {event}: type {event_type} is not allowed in PCR {pcr} here ({why})")]
    RetypedEvent {
        event: usize,
        pcr: u32,
        event_type: EventType,
        why: &'static str,
    },
    /// A separator whose data is neither 0x00000000 nor the error value 0x00000001.
    #[error("event {event}: separator in PCR {pcr} has invalid data")]
    InvalidSeparator { event: usize, pcr: u32 },
    /// A second separator in one of PCRs 0-7.
    #[error("event {event}: extra separator in PCR {pcr}")]
    ExtraSeparator { event: usize, pcr: u32 },
    /// PCR 0-7 has no separator: the log is truncated (or was cut to hide later events).
    #[error("log has no separator in PCR {pcr} (truncated log)")]
    MissingSeparator { pcr: u32 },
    /// PCR 7 records something other than an authority after its separator.
    #[error("event {event}: {event_type} in PCR 7 after its separator")]
    EventAfterSeparator { event: usize, event_type: EventType },
    /// A Secure Boot variable was measured twice.
    #[error("event {event}: Secure Boot variable {name} measured a second time")]
    DuplicateVariable { event: usize, name: String },
    /// A Secure Boot variable with the wrong vendor GUID (a look-alike).
    #[error("event {event}: variable {name} has vendor GUID {guid}, not the Secure Boot one")]
    WrongVariableGuid {
        event: usize,
        name: String,
        guid: crate::Guid,
    },
    /// An event payload the rules depend on does not decode.
    #[error("event {event}: payload does not decode: {problem}")]
    BadPayload { event: usize, problem: Problem },
    /// The log has no bank this reader can verify digests with.
    #[error("log has no SHA-1/SHA-256/SHA-384/SHA-512 bank to verify digests with")]
    NoVerifiableBank,
}
