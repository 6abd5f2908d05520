//! TCG PC Client event logs, as firmware writes them and verifiers read them (TCG PC Client
//! Platform Firmware Profile, "PFP", rev 1.05/1.06, chapter 10). Bytes in, values and bytes
//! out: this crate never reads a file, and never panics on a hostile log.
//!
//! - [`EventLog::parse`] reads SHA-1 (TCG_PCR_EVENT) and crypto-agile (TCG_PCR_EVENT2) logs;
//!   [`EventLog::to_bytes`] writes any parsed log back byte for byte.
//! - [`LogBuilder`] writes a new crypto-agile log event by event (for a virtual firmware).
//! - [`EventLog::replay`] computes the PCR values a log claims, per bank;
//!   [`EventLog::append_final_events`] merges the EFI Final Events Table.
//! - [`EventLog::decode`] decodes event payloads (UEFI variables, image loads with device
//!   paths, GPT, actions, IPL strings, firmware blobs, handoff tables, ...).
//! - [`SecureBootState::from_log`] and [`BootComponents::from_log`] read what a verifier
//!   needs, after the checks of [`validate`] that resist forged, retyped and extra events.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod alg;
mod builder;
mod data;
mod device_path;
mod error;
mod event_type;
mod guid;
mod log;
mod reader;
mod replay;
mod secureboot;
mod spec_id;

pub use alg::AlgorithmId;
pub use builder::LogBuilder;
pub use data::{
    EventData, FirmwareBlob, GptData, GptPartition, HandoffTables, ImageLoadEvent, IplString,
    NoActionEvent, UefiVariableData,
};
pub use device_path::{DevicePath, DevicePathNode};
pub use error::{Error, Problem, Rejection};
pub use event_type::EventType;
pub use guid::Guid;
pub use log::{Digest, Event, EventLog, LogFormat, MAX_EVENTS, MAX_EVENT_DATA, MAX_LOG_SIZE};
pub use replay::{Bank, Pcrs};
pub use secureboot::{
    digest_of, validate, Authority, AuthorityKind, BootApplication, BootComponents, BootRole,
    BootString, FirmwareMeasurement, SecureBootState, VariableMeasurement,
};
pub use spec_id::{SpecIdAlgorithm, SpecIdEvent, StartupLocality};
