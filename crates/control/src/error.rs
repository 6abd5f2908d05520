//! The domain's one error type. Every failure maps to exactly one AKS-style error code and one
//! HTTP status; the CLI maps the status to its exit code.

use thiserror::Error;

/// The AKS code for a pool whose configuration Trusted Launch cannot run.
pub const TRUSTED_LAUNCH_INCOMPATIBLE: &str = "TrustedLaunchIncompatibleWithConfig";

/// One of the seed's rules, broken. `rule()` is the stable rule name printed in messages and
/// documented in `docs/ARCHITECTURE.md`; `code()` is the AKS-style error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleViolation {
    #[error("Trusted Launch requires Kubernetes 1.25.2 or later, but the pool would run {version} (rule: kubernetes-version)")]
    KubernetesVersion { version: String },
    #[error("Trusted Launch supports Generation 2 VMs only, and VM size {vm_size} has no Generation 2 image (rule: generation-2-only)")]
    Generation2Only { vm_size: String },
    #[error(
        "Trusted Launch does not support node pools running Windows Server (rule: no-windows)"
    )]
    Windows,
    #[error("Trusted Launch does not support node pools with FIPS enabled (rule: no-fips)")]
    Fips,
    #[error("Trusted Launch does not support Arm64 node pools, and VM size {vm_size} is Arm64 (rule: no-arm64)")]
    Arm64 { vm_size: String },
    #[error("Trusted Launch does not support virtual nodes (the virtual-node add-on) (rule: no-virtual-nodes)")]
    VirtualNodes,
    #[error("Trusted Launch supports virtual machine scale sets only, not availability sets (rule: scale-sets-only)")]
    AvailabilitySet,
    #[error("Secure Boot on GPU node pool with VM size {vm_size} requires skipping GPU driver installation (--gpu-driver None or --skip-gpu-driver-install): the GPU driver is not signed (rule: gpu-secure-boot-driver)")]
    GpuDriverWithSecureBoot { vm_size: String },
    #[error("VM size {vm_size} does not support ephemeral OS disks with Trusted Launch; use --node-osdisk-type Managed or another size (rule: ephemeral-os-disk-size)")]
    EphemeralOsDisk { vm_size: String },
    #[error("Agent pool name {name:?} is invalid: {os} pool names must be lowercase alphanumeric, start with a lowercase letter and be 1 to {max} characters long (rule: pool-name)")]
    PoolName {
        name: String,
        os: &'static str,
        max: usize,
    },
}

impl RuleViolation {
    /// The stable name of the rule (also at the end of each message).
    pub fn rule(&self) -> &'static str {
        match self {
            Self::KubernetesVersion { .. } => "kubernetes-version",
            Self::Generation2Only { .. } => "generation-2-only",
            Self::Windows => "no-windows",
            Self::Fips => "no-fips",
            Self::Arm64 { .. } => "no-arm64",
            Self::VirtualNodes => "no-virtual-nodes",
            Self::AvailabilitySet => "scale-sets-only",
            Self::GpuDriverWithSecureBoot { .. } => "gpu-secure-boot-driver",
            Self::EphemeralOsDisk { .. } => "ephemeral-os-disk-size",
            Self::PoolName { .. } => "pool-name",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::PoolName { .. } => "InvalidAgentPoolName",
            _ => TRUSTED_LAUNCH_INCOMPATIBLE,
        }
    }
}

/// Everything the domain can refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    #[error(transparent)]
    Rule(#[from] RuleViolation),
    #[error(
        "Kubernetes version {0:?} is not a version (expected MAJOR.MINOR or MAJOR.MINOR.PATCH)"
    )]
    InvalidKubernetesVersion(String),
    #[error("VM size {0:?} is not in this server's VM-size catalog")]
    UnknownVmSize(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("max surge {0:?} is neither a positive count nor a percentage between 1% and 100%")]
    InvalidMaxSurge(String),
    #[error("{kind} {name:?} was not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
}

impl ControlError {
    /// The AKS-style code in `{"error":{"code":…}}`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rule(r) => r.code(),
            Self::InvalidKubernetesVersion(_) => "InvalidKubernetesVersion",
            Self::UnknownVmSize(_) => "InvalidVMSize",
            Self::InvalidParameter(_) => "InvalidParameter",
            Self::InvalidMaxSurge(_) => "InvalidMaxSurge",
            Self::NotFound { .. } => "ResourceNotFound",
            Self::Conflict(_) => "OperationNotAllowed",
        }
    }

    /// The HTTP status the server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::Conflict(_) => 409,
            _ => 400,
        }
    }
}
