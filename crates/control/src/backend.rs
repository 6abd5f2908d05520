//! The seam where nodes become real: a `NodeBackend` creates, reimages and deletes the VM
//! behind a node record and reports how it booted. The control plane calls it from its
//! rolling plans; the embedded backend (virtual firmware + vTPM + attestation, issue 6/7) and
//! QEMU/KVM plug in here. Implementations must be idempotent: a resumed operation may repeat
//! the last call.

use crate::model::{AttestationStatus, SecurityProfile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// What the backend needs to realise one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    pub name: String,
    pub resource_group: String,
    pub cluster_name: String,
    pub pool_name: String,
    pub vm_size: String,
    pub node_image_version: String,
    pub security_profile: SecurityProfile,
    /// The labels the node is registered with.
    pub labels: BTreeMap<String, String>,
}

/// How one boot went, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootReport {
    /// The VM reached the OS (Secure Boot may have refused an unsigned component).
    pub booted: bool,
    /// Why not, naming the component, when `booted` is false.
    pub failure: Option<String>,
    /// The verifier's verdict, if the backend attested the boot; `None` leaves the node's
    /// attestation `Pending` (the control plane never invents one).
    pub attestation: Option<AttestationStatus>,
    /// The health token (Healthy) or the integrity alert (Unhealthy) as the verifier issued it.
    pub evidence: Option<serde_json::Value>,
}

impl BootReport {
    /// A boot that happened with no attestation: what a backend without a verifier reports.
    pub fn booted_unattested() -> Self {
        Self {
            booted: true,
            failure: None,
            attestation: None,
            evidence: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    #[error("node {0} is not known to the backend")]
    UnknownNode(String),
    #[error("node backend failed: {0}")]
    Failed(String),
}

/// Realises nodes. Calls are blocking (the server runs them off its async workers) and must be
/// idempotent: `create` of an existing node and `delete` of a missing one succeed.
pub trait NodeBackend: Send + Sync {
    /// A short name for logs and `GET /admin/backend` (`"records-only"`, `"embedded"`, `"qemu"`).
    fn name(&self) -> &'static str;
    /// Creates the node's VM (disk from its image, vTPM when enabled) and boots it.
    fn create(&self, node: &NodeSpec) -> Result<BootReport, BackendError>;
    /// Replaces the node's OS disk with a fresh copy of its image (the spec may carry a new
    /// image or security profile) and boots it again.
    fn reimage(&self, node: &NodeSpec) -> Result<BootReport, BackendError>;
    /// Deletes the VM and its vTPM state.
    fn delete(&self, node: &str) -> Result<(), BackendError>;
    /// Reboots the node as it is (same disk, same vTPM) and reports the boot. By default a
    /// reboot is a `create` of the existing node (idempotent by contract).
    fn reboot(&self, node: &NodeSpec) -> Result<BootReport, BackendError> {
        self.create(node)
    }
    /// For demos and tests: replaces `component` (kernel, grub, shim, module) on the node's
    /// disk with a modified copy, as a bootkit would; the next boot shows it. Returns what
    /// was changed.
    fn tamper(&self, node: &str, component: &str) -> Result<String, BackendError> {
        let _ = (node, component);
        Err(BackendError::Failed(format!(
            "the {} backend has no disks to tamper with",
            self.name()
        )))
    }
}

/// The backend used until a real one is plugged in: it keeps no VMs, every boot "succeeds"
/// and attestation stays `Pending`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordsOnly;

impl NodeBackend for RecordsOnly {
    fn name(&self) -> &'static str {
        "records-only"
    }
    fn create(&self, _: &NodeSpec) -> Result<BootReport, BackendError> {
        Ok(BootReport::booted_unattested())
    }
    fn reimage(&self, _: &NodeSpec) -> Result<BootReport, BackendError> {
        Ok(BootReport::booted_unattested())
    }
    fn delete(&self, _: &str) -> Result<(), BackendError> {
        Ok(())
    }
}
