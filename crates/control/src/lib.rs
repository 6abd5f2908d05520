//! The Trusted Launch management plane's domain: managed clusters, agent pools and their
//! nodes in AKS's resource shapes, the VM-size catalog, the seed's rules, node labels, rolling
//! reimage plans and long-running operations. Pure logic: no I/O, no clock, no environment.
//!
//! The server (`crates/server`) persists these values through `crates/store` and realises
//! nodes through a [`NodeBackend`]; the CLI prints them.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backend;
pub mod catalog;
pub mod error;
pub mod labels;
pub mod model;
pub mod operation;
pub mod reimage;
pub mod rules;
pub mod version;

pub use backend::{BackendError, BootReport, NodeBackend, NodeSpec, RecordsOnly};
pub use catalog::{Architecture, VmSize};
pub use error::{ControlError, RuleViolation};
pub use model::{
    AgentPool, AgentPoolProperties, AgentPoolSpec, Attestation, AttestationStatus, GpuDriver,
    ManagedCluster, ManagedClusterProperties, ManagedClusterSpec, Node, NodeCondition, OsDiskType,
    OsSku, OsType, PoolMode, ResourceId, SecurityProfile, Taint, VmSetType,
};
pub use operation::{ErrorDetail, Operation, OperationKind, OperationStatus};
pub use reimage::{MaxSurge, ReimagePlan, ReimageStep, StepAction};
pub use version::KubernetesVersion;
