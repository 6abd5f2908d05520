//! The resources in AKS's REST shapes (`Microsoft.ContainerService/managedClusters` and its
//! `agentPools`), and the node. Field names follow the ARM API (`enableVTPM`, `enableFIPS`,
//! `osSKU`); `az`'s flattened view is derived from them by the CLI.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The subscription every resource id of this server carries (one tenant per server).
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
pub const CLUSTER_TYPE: &str = "Microsoft.ContainerService/ManagedClusters";
pub const AGENT_POOL_TYPE: &str = "Microsoft.ContainerService/managedClusters/agentPools";

/// The ARM id of a cluster, or of one of its agent pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    pub resource_group: String,
    pub cluster: String,
    pub agent_pool: Option<String>,
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.resource_group, self.cluster
        )?;
        if let Some(p) = &self.agent_pool {
            write!(f, "/agentPools/{p}")?;
        }
        Ok(())
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? } default $def:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)+
        }
        impl Default for $name {
            fn default() -> Self { $name::$def }
        }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
            /// Parses the wire text, ignoring case as `az` does.
            pub fn parse(text: &str) -> Option<Self> {
                [$($name::$variant),+].into_iter().find(|v| v.as_str().eq_ignore_ascii_case(text))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

wire_enum!(OsType { Linux = "Linux", Windows = "Windows" } default Linux);
wire_enum!(OsSku { Ubuntu = "Ubuntu", AzureLinux = "AzureLinux", Windows2022 = "Windows2022" } default Ubuntu);
wire_enum!(OsDiskType { Managed = "Managed", Ephemeral = "Ephemeral" } default Managed);
wire_enum!(PoolMode { System = "System", User = "User" } default User);
wire_enum!(VmSetType { VirtualMachineScaleSets = "VirtualMachineScaleSets", AvailabilitySet = "AvailabilitySet" } default VirtualMachineScaleSets);
wire_enum!(GpuDriver { Install = "Install", None = "None" } default Install);
wire_enum!(
    /// Latest attestation verdict of a node. `Pending` until a backend reports one.
    AttestationStatus { Pending = "Pending", Healthy = "Healthy", Unhealthy = "Unhealthy" } default Pending
);

/// `properties.securityProfile` of an agent pool: both false unless set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityProfile {
    #[serde(default)]
    pub enable_secure_boot: bool,
    #[serde(default, rename = "enableVTPM", alias = "enableVtpm")]
    pub enable_vtpm: bool,
}

impl SecurityProfile {
    pub fn trusted_launch(self) -> bool {
        self.enable_secure_boot || self.enable_vtpm
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuProfile {
    pub driver: GpuDriver,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSettings {
    pub max_surge: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerState {
    pub code: String,
}

/// An agent pool's `properties`, fully resolved (every default applied, rules checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolProperties {
    pub count: u32,
    pub vm_size: String,
    pub os_type: OsType,
    #[serde(rename = "osSKU")]
    pub os_sku: OsSku,
    pub os_disk_type: OsDiskType,
    pub mode: PoolMode,
    pub orchestrator_version: String,
    pub current_orchestrator_version: String,
    #[serde(rename = "type")]
    pub vm_set_type: VmSetType,
    #[serde(rename = "enableFIPS")]
    pub enable_fips: bool,
    pub gpu_profile: Option<GpuProfile>,
    pub security_profile: SecurityProfile,
    pub upgrade_settings: UpgradeSettings,
    pub node_image_version: String,
    pub provisioning_state: String,
    pub power_state: PowerState,
}

/// An agent pool resource as `GET …/agentPools/NAME` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPool {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub properties: AgentPoolProperties,
}

/// What a client may send in an agent pool's `properties` (PUT body, or one entry of a
/// cluster's `agentPoolProfiles`): everything optional, defaults applied by the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AgentPoolSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub count: Option<u32>,
    pub vm_size: Option<String>,
    pub os_type: Option<OsType>,
    #[serde(rename = "osSKU", alias = "osSku")]
    pub os_sku: Option<OsSku>,
    pub os_disk_type: Option<OsDiskType>,
    pub mode: Option<PoolMode>,
    pub orchestrator_version: Option<String>,
    #[serde(rename = "type")]
    pub vm_set_type: Option<VmSetType>,
    #[serde(rename = "enableFIPS", alias = "enableFips")]
    pub enable_fips: Option<bool>,
    pub gpu_profile: Option<GpuProfile>,
    pub security_profile: Option<SecurityProfile>,
    pub upgrade_settings: Option<UpgradeSettings>,
}

/// A cluster's add-on, as `properties.addonProfiles.NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonProfile {
    pub enabled: bool,
}

/// The add-on `az aks create --enable-addons virtual-node` turns on.
pub const VIRTUAL_NODE_ADDON: &str = "aciConnectorLinux";

/// `properties` of a managed cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedClusterProperties {
    pub provisioning_state: String,
    pub kubernetes_version: String,
    pub current_kubernetes_version: String,
    pub dns_prefix: String,
    pub fqdn: String,
    pub node_resource_group: String,
    #[serde(rename = "enableRBAC")]
    pub enable_rbac: bool,
    pub addon_profiles: BTreeMap<String, AddonProfile>,
    /// Filled from the cluster's pools on every read; the store keeps pools apart.
    #[serde(default)]
    pub agent_pool_profiles: Vec<serde_json::Value>,
    pub power_state: PowerState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedCluster {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub location: String,
    pub properties: ManagedClusterProperties,
}

impl ManagedCluster {
    pub fn resource_group(&self) -> String {
        self.id
            .split('/')
            .skip_while(|s| !s.eq_ignore_ascii_case("resourceGroups"))
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    pub fn virtual_nodes(&self) -> bool {
        self.properties
            .addon_profiles
            .get(VIRTUAL_NODE_ADDON)
            .is_some_and(|a| a.enabled)
    }
}

/// What a client may send to create a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ManagedClusterSpec {
    pub location: Option<String>,
    pub properties: ManagedClusterSpecProperties,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ManagedClusterSpecProperties {
    pub kubernetes_version: Option<String>,
    pub dns_prefix: Option<String>,
    pub agent_pool_profiles: Vec<AgentPoolSpec>,
    pub addon_profiles: BTreeMap<String, AddonProfile>,
}

/// A Kubernetes taint on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: String,
}

/// A Kubernetes node condition (`Ready`, and the attestation condition a verifier sets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// A node's latest attestation. The control plane never invents a verdict: it stays `Pending`
/// until the node backend or the verifier reports one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub status: AttestationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<serde_json::Value>,
}

/// A node of an agent pool: one VM of its scale set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    pub resource_group: String,
    pub cluster_name: String,
    pub pool_name: String,
    /// Position in the scale set (the `vmss00000N` suffix).
    pub ordinal: u32,
    pub vm_size: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub conditions: Vec<NodeCondition>,
    pub node_image_version: String,
    pub security_profile: SecurityProfile,
    pub boot_count: u64,
    pub cordoned: bool,
    pub attestation: Attestation,
    /// When the node record was first created (RFC 3339, UTC), set by the server.
    pub created_at: String,
}

/// The scale-set name part of a pool's node names (`aks-POOL-NNNNNNNN-vmss`), stable per
/// cluster and pool, as AKS derives it from a hash.
pub fn node_name(resource_group: &str, cluster: &str, pool: &str, ordinal: u32) -> String {
    // FNV-1a: stable across releases and platforms (the std hasher is not).
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{resource_group}/{cluster}").bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("aks-{pool}-{:08}-vmss{ordinal:06x}", h % 100_000_000)
}

/// The pool and ordinal a node name carries (the inverse of [`node_name`]).
pub fn parse_node_name(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix("aks-")?;
    let (pool, rest) = rest.split_once('-')?;
    let (_, suffix) = rest.split_once("-vmss")?;
    Some((pool, u32::from_str_radix(suffix, 16).ok()?))
}

impl ResourceId {
    /// Parses `/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerService/
    /// managedClusters/C[/agentPools/P]` (segment names compared without case).
    pub fn parse(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.split('/').collect();
        let at = |i: usize, name: &str| parts.get(i).is_some_and(|s| s.eq_ignore_ascii_case(name));
        if !(parts.first() == Some(&"")
            && at(1, "subscriptions")
            && at(3, "resourceGroups")
            && at(5, "providers")
            && at(6, "Microsoft.ContainerService")
            && at(7, "managedClusters"))
        {
            return None;
        }
        let agent_pool = match parts.len() {
            9 => None,
            11 if at(9, "agentPools") => Some(parts.get(10)?.to_string()),
            _ => return None,
        };
        Some(Self {
            resource_group: parts.get(4)?.to_string(),
            cluster: parts.get(8)?.to_string(),
            agent_pool,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_ids_parse_back() {
        let n = node_name("rg", "c1", "np", 26);
        assert_eq!(parse_node_name(&n), Some(("np", 26)));
        assert_eq!(parse_node_name("node1"), None);
        for pool in [None, Some("np".to_string())] {
            let id = ResourceId {
                resource_group: "rg".into(),
                cluster: "c1".into(),
                agent_pool: pool,
            };
            assert_eq!(ResourceId::parse(&id.to_string()), Some(id));
        }
        assert_eq!(ResourceId::parse("/subscriptions/x"), None);
    }

    #[test]
    fn ids_look_like_arm_ids() {
        let id = ResourceId {
            resource_group: "rg".into(),
            cluster: "c1".into(),
            agent_pool: Some("np".into()),
        };
        assert_eq!(
            id.to_string(),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1/agentPools/np"
        );
    }

    #[test]
    fn node_names_are_stable_and_aks_shaped() {
        let a = node_name("rg", "c1", "np", 10);
        assert_eq!(a, node_name("rg", "c1", "np", 10));
        assert!(
            a.starts_with("aks-np-") && a.ends_with("-vmss00000a"),
            "{a}"
        );
        assert_ne!(a, node_name("rg", "c2", "np", 10));
    }

    #[test]
    fn security_profile_wire_names_and_defaults() {
        let p: SecurityProfile = serde_json::from_str("{}").unwrap();
        assert_eq!(p, SecurityProfile::default());
        let v = serde_json::to_value(SecurityProfile {
            enable_secure_boot: true,
            enable_vtpm: false,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"enableSecureBoot": true, "enableVTPM": false})
        );
    }

    #[test]
    fn enums_parse_without_case() {
        assert_eq!(OsType::parse("windows"), Some(OsType::Windows));
        assert_eq!(
            VmSetType::parse("availabilityset"),
            Some(VmSetType::AvailabilitySet)
        );
        assert_eq!(GpuDriver::parse("none"), Some(GpuDriver::None));
        assert_eq!(OsSku::parse("Mariner"), None);
    }
}
