//! The virtual Generation 2 UEFI firmware: it boots a node image as OVMF, shim and Debian's
//! grub do — Secure Boot enforced at each step, every step measured into the node's vTPM
//! and a TCG event log — without emulating a CPU.
//!
//! It measures what the real chain measures, from the artifacts themselves (grub's embedded
//! configuration, shim's vendor certificate and SBAT level, the images' Authenticode
//! digests), never from stored values.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod boot;
pub mod fat;
pub mod grub;
pub mod kernel;
pub mod measure;
pub mod platform;

pub use boot::{boot, boot_with, BootCache, BootReport, Component, FirmwareError, NodeImage, Stop};
pub use measure::{Pcrs, SoftwarePcrs, TpmFailure};
