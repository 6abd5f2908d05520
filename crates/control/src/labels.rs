//! The labels a pool's nodes carry: AKS's usual ones plus the seed's Trusted Launch labels,
//! which follow the pool's security profile (and go when a feature is disabled).

use crate::catalog::{self, Architecture};
use crate::model::{AgentPoolProperties, OsType};
use std::collections::BTreeMap;

/// On nodes of vTPM pools (the seed's node selector).
pub const TRUSTED_LAUNCH: &str = "kubernetes.azure.com/trusted-launch";
/// On nodes of Secure Boot pools (the seed's node selector).
pub const SECURE_BOOT: &str = "kubernetes.azure.com/secure-boot";
/// On nodes of pools with either feature, as today's service adds.
pub const SECURITY_TYPE: &str = "kubernetes.azure.com/security-type";

/// Every label of node `node_name` in pool `pool` of `cluster`.
pub fn node_labels(
    cluster: &str,
    pool: &str,
    props: &AgentPoolProperties,
    node_name: &str,
) -> BTreeMap<String, String> {
    let arch = match catalog::lookup(&props.vm_size).map(|s| s.architecture) {
        Some(Architecture::Arm64) => "arm64",
        _ => "amd64",
    };
    let os = match props.os_type {
        OsType::Linux => "linux",
        OsType::Windows => "windows",
    };
    let mut l = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        l.insert(k.to_string(), v.to_string());
    };
    set("agentpool", pool);
    set("beta.kubernetes.io/arch", arch);
    set("beta.kubernetes.io/os", os);
    set("kubernetes.azure.com/agentpool", pool);
    set("kubernetes.azure.com/cluster", cluster);
    set(
        "kubernetes.azure.com/mode",
        &props.mode.as_str().to_ascii_lowercase(),
    );
    set(
        "kubernetes.azure.com/node-image-version",
        &props.node_image_version,
    );
    set("kubernetes.azure.com/os-sku", props.os_sku.as_str());
    set("kubernetes.io/arch", arch);
    set("kubernetes.io/hostname", node_name);
    set("kubernetes.io/os", os);
    set("kubernetes.io/role", "agent");
    set("node.kubernetes.io/instance-type", &props.vm_size);
    let sp = props.security_profile;
    if sp.enable_vtpm {
        set(TRUSTED_LAUNCH, "true");
    }
    if sp.enable_secure_boot {
        set(SECURE_BOOT, "true");
    }
    if sp.trusted_launch() {
        set(SECURITY_TYPE, "TrustedLaunch");
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentPoolSpec, SecurityProfile};
    use crate::rules::{resolve_pool, PoolContext};

    fn labels(sb: bool, vtpm: bool) -> BTreeMap<String, String> {
        let ctx = PoolContext {
            resource_group: "rg",
            cluster: "c1",
            kubernetes_version: "1.30.6",
            virtual_nodes: false,
        };
        let spec = AgentPoolSpec {
            security_profile: Some(SecurityProfile {
                enable_secure_boot: sb,
                enable_vtpm: vtpm,
            }),
            ..AgentPoolSpec::default()
        };
        let p = resolve_pool(&ctx, "np", &spec, None).unwrap();
        node_labels("c1", "np", &p.properties, "aks-np-1-vmss000000")
    }

    #[test]
    fn labels_follow_the_features() {
        let none = labels(false, false);
        assert!(!none.contains_key(TRUSTED_LAUNCH));
        assert!(!none.contains_key(SECURE_BOOT));
        assert!(!none.contains_key(SECURITY_TYPE));
        assert_eq!(none["kubernetes.azure.com/agentpool"], "np");
        let vtpm = labels(false, true);
        assert_eq!(vtpm[TRUSTED_LAUNCH], "true");
        assert!(!vtpm.contains_key(SECURE_BOOT));
        assert_eq!(vtpm[SECURITY_TYPE], "TrustedLaunch");
        let sb = labels(true, false);
        assert_eq!(sb[SECURE_BOOT], "true");
        assert!(!sb.contains_key(TRUSTED_LAUNCH));
        let both = labels(true, true);
        assert_eq!(both[SECURE_BOOT], "true");
        assert_eq!(both[TRUSTED_LAUNCH], "true");
    }
}
