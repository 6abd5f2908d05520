//! The seed's rules: resolving what a client asked for (an `AgentPoolSpec`, perhaps over an
//! existing pool) into a complete agent pool, refusing with a named `RuleViolation` whatever
//! Trusted Launch cannot run. Also picks the node image (Trusted Launch or not).

use crate::catalog::{self, Architecture, VmSize};
use crate::error::{ControlError, RuleViolation};
use crate::model::{
    AgentPool, AgentPoolProperties, AgentPoolSpec, GpuDriver, GpuProfile, ManagedCluster,
    ManagedClusterProperties, ManagedClusterSpec, OsDiskType, OsSku, OsType, PoolMode, PowerState,
    ResourceId, SecurityProfile, UpgradeSettings, VmSetType, AGENT_POOL_TYPE, CLUSTER_TYPE,
    SUBSCRIPTION,
};
use crate::reimage::MaxSurge;
use crate::version::KubernetesVersion;

/// `az aks nodepool add`'s default node count (the seed: "default 3").
pub const DEFAULT_NODE_COUNT: u32 = 3;
/// `az aks nodepool add`'s default VM size for Linux pools.
pub const DEFAULT_VM_SIZE: &str = "Standard_DS2_v2";
/// `--max-surge` when none is given (the seed: default 1).
pub const DEFAULT_MAX_SURGE: &str = "1";
/// The largest pool this server accepts.
pub const MAX_NODE_COUNT: u32 = 1000;
/// The node image release every image name carries.
pub const IMAGE_RELEASE: &str = "202411.01.0";

/// Where a pool lives, as the rules need it.
#[derive(Debug, Clone, Copy)]
pub struct PoolContext<'a> {
    pub resource_group: &'a str,
    pub cluster: &'a str,
    pub kubernetes_version: &'a str,
    pub virtual_nodes: bool,
}

/// The seed's naming rule: lowercase alphanumeric, starting with a lowercase letter, 1 to 11
/// characters for Linux pools (6 for Windows, as AKS has it).
pub fn check_pool_name(name: &str, os: OsType) -> Result<(), RuleViolation> {
    let max = match os {
        OsType::Linux => 11,
        OsType::Windows => 6,
    };
    let ok = !name.is_empty()
        && name.len() <= max
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(RuleViolation::PoolName {
            name: name.to_string(),
            os: os.as_str(),
            max,
        })
    }
}

/// Every Trusted Launch rule that depends on the pool's configuration alone, in the seed's
/// order. The first one broken is returned. `secure_boot` adds the GPU-driver rule.
fn check_trusted_launch(
    ctx: &PoolContext<'_>,
    version: KubernetesVersion,
    size: &VmSize,
    p: &AgentPoolProperties,
) -> Result<(), RuleViolation> {
    if !version.supports_trusted_launch() {
        return Err(RuleViolation::KubernetesVersion {
            version: version.resolved().to_string(),
        });
    }
    if !size.gen2 {
        return Err(RuleViolation::Generation2Only {
            vm_size: size.name.to_string(),
        });
    }
    if p.os_type == OsType::Windows {
        return Err(RuleViolation::Windows);
    }
    if p.enable_fips {
        return Err(RuleViolation::Fips);
    }
    if size.architecture == Architecture::Arm64 {
        return Err(RuleViolation::Arm64 {
            vm_size: size.name.to_string(),
        });
    }
    if ctx.virtual_nodes {
        return Err(RuleViolation::VirtualNodes);
    }
    if p.vm_set_type == VmSetType::AvailabilitySet {
        return Err(RuleViolation::AvailabilitySet);
    }
    if p.security_profile.enable_secure_boot
        && size.gpu
        && p.gpu_profile.is_none_or(|g| g.driver == GpuDriver::Install)
    {
        return Err(RuleViolation::GpuDriverWithSecureBoot {
            vm_size: size.name.to_string(),
        });
    }
    if p.os_disk_type == OsDiskType::Ephemeral && !size.ephemeral_os_disk_trusted_launch {
        return Err(RuleViolation::EphemeralOsDisk {
            vm_size: size.name.to_string(),
        });
    }
    Ok(())
}

/// The node image a pool gets: a Trusted Launch ("TL") image whenever its configuration is
/// Trusted-Launch compatible, whether or not a feature is on (the seed, operation 3).
pub fn node_image(
    p: &AgentPoolProperties,
    size: &VmSize,
    trusted_launch_compatible: bool,
) -> String {
    if p.os_type == OsType::Windows {
        return "AKSWindows-2022-containerd-20348.2762.241009".to_string();
    }
    let generation = match (size.gen2, size.architecture) {
        (_, Architecture::Arm64) => "gen2arm64",
        (true, _) if trusted_launch_compatible => "gen2TL",
        (true, _) => "gen2",
        (false, _) => "",
    };
    match p.os_sku {
        OsSku::AzureLinux => format!("AKSAzureLinux-V2{generation}-{IMAGE_RELEASE}"),
        _ => format!("AKSUbuntu-2204{generation}containerd-{IMAGE_RELEASE}"),
    }
}

/// Resolves `spec` (over `previous` for an update) into the complete agent pool named `name`,
/// or the first rule it breaks. Pure: the caller persists and realises the result.
pub fn resolve_pool(
    ctx: &PoolContext<'_>,
    name: &str,
    spec: &AgentPoolSpec,
    previous: Option<&AgentPoolProperties>,
) -> Result<AgentPool, ControlError> {
    let os_type = spec
        .os_type
        .or(previous.map(|p| p.os_type))
        .unwrap_or_default();
    check_pool_name(name, os_type)?;
    let count = spec
        .count
        .or(previous.map(|p| p.count))
        .unwrap_or(DEFAULT_NODE_COUNT);
    if count > MAX_NODE_COUNT {
        return Err(ControlError::InvalidParameter(format!(
            "node count {count} is out of range: a pool has 0 to {MAX_NODE_COUNT} nodes"
        )));
    }
    let mode = spec
        .mode
        .or(previous.map(|p| p.mode))
        .unwrap_or(PoolMode::User);
    if mode == PoolMode::System && count == 0 {
        return Err(ControlError::InvalidParameter(
            "a System pool needs at least one node".to_string(),
        ));
    }
    if mode == PoolMode::System && os_type == OsType::Windows {
        return Err(ControlError::InvalidParameter(
            "a System pool must run Linux".to_string(),
        ));
    }
    let vm_size_name = spec
        .vm_size
        .clone()
        .or(previous.map(|p| p.vm_size.clone()))
        .unwrap_or_else(|| DEFAULT_VM_SIZE.to_string());
    let size = catalog::lookup(&vm_size_name)
        .ok_or_else(|| ControlError::UnknownVmSize(vm_size_name.clone()))?;
    let version_text = spec
        .orchestrator_version
        .clone()
        .or(previous.map(|p| p.orchestrator_version.clone()))
        .unwrap_or_else(|| ctx.kubernetes_version.to_string());
    let version = KubernetesVersion::parse(&version_text)?;
    let max_surge = spec
        .upgrade_settings
        .as_ref()
        .map(|u| u.max_surge.clone())
        .or(previous.map(|p| p.upgrade_settings.max_surge.clone()))
        .unwrap_or_else(|| DEFAULT_MAX_SURGE.to_string());
    MaxSurge::parse(&max_surge)?;
    let os_sku = match os_type {
        OsType::Windows => OsSku::Windows2022,
        OsType::Linux => {
            let sku = spec
                .os_sku
                .or(previous.map(|p| p.os_sku))
                .unwrap_or_default();
            if sku == OsSku::Windows2022 {
                return Err(ControlError::InvalidParameter(
                    "OS SKU Windows2022 needs --os-type Windows".to_string(),
                ));
            }
            sku
        }
    };
    let gpu_profile = size.gpu.then(|| {
        spec.gpu_profile
            .or(previous.and_then(|p| p.gpu_profile))
            .unwrap_or(GpuProfile {
                driver: GpuDriver::Install,
            })
    });
    let mut props = AgentPoolProperties {
        count,
        vm_size: size.name.to_string(),
        os_type,
        os_sku,
        os_disk_type: spec
            .os_disk_type
            .or(previous.map(|p| p.os_disk_type))
            .unwrap_or_default(),
        mode,
        orchestrator_version: version.to_string(),
        current_orchestrator_version: version.resolved().to_string(),
        vm_set_type: spec
            .vm_set_type
            .or(previous.map(|p| p.vm_set_type))
            .unwrap_or_default(),
        enable_fips: spec
            .enable_fips
            .or(previous.map(|p| p.enable_fips))
            .unwrap_or(false),
        gpu_profile,
        security_profile: spec
            .security_profile
            .or(previous.map(|p| p.security_profile))
            .unwrap_or_default(),
        upgrade_settings: UpgradeSettings { max_surge },
        node_image_version: String::new(),
        provisioning_state: "Succeeded".to_string(),
        power_state: PowerState {
            code: "Running".to_string(),
        },
    };
    let compatible = {
        // Compatibility ignores the GPU-driver rule: it only concerns Secure Boot being on.
        let probe = AgentPoolProperties {
            security_profile: SecurityProfile::default(),
            ..props.clone()
        };
        check_trusted_launch(ctx, version, size, &probe).is_ok()
    };
    if props.security_profile.trusted_launch() {
        check_trusted_launch(ctx, version, size, &props)?;
    }
    props.node_image_version = node_image(&props, size, compatible);
    let id = ResourceId {
        resource_group: ctx.resource_group.to_string(),
        cluster: ctx.cluster.to_string(),
        agent_pool: Some(name.to_string()),
    };
    Ok(AgentPool {
        id: id.to_string(),
        name: name.to_string(),
        kind: AGENT_POOL_TYPE.to_string(),
        properties: props,
    })
}

/// Refuses an update that changes what a pool is rather than how it runs (AKS refuses these
/// too: a new VM size or OS is a new pool).
pub fn check_update(
    old: &AgentPoolProperties,
    new: &AgentPoolProperties,
) -> Result<(), ControlError> {
    let fixed = [
        ("vmSize", old.vm_size != new.vm_size),
        ("osType", old.os_type != new.os_type),
        ("osSKU", old.os_sku != new.os_sku),
        ("type", old.vm_set_type != new.vm_set_type),
        ("osDiskType", old.os_disk_type != new.os_disk_type),
        ("mode", old.mode != new.mode),
    ];
    match fixed.iter().find(|(_, changed)| *changed) {
        Some((name, _)) => Err(ControlError::InvalidParameter(format!(
            "property {name} of an existing agent pool cannot be changed; create a new pool instead"
        ))),
        None => Ok(()),
    }
}

/// True when going from `old` to `new` changes what runs on the nodes, so the pool must be
/// reimaged rolling (the seed: "an update automatically starts reimaging the nodes").
pub fn needs_reimage(old: &AgentPoolProperties, new: &AgentPoolProperties) -> bool {
    old.security_profile != new.security_profile
        || old.node_image_version != new.node_image_version
        || old.current_orchestrator_version != new.current_orchestrator_version
        || old.enable_fips != new.enable_fips
        || old.gpu_profile != new.gpu_profile
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GpuDriver, GpuProfile};

    const CTX: PoolContext<'static> = PoolContext {
        resource_group: "rg",
        cluster: "c1",
        kubernetes_version: "1.30.6",
        virtual_nodes: false,
    };

    fn tl(sb: bool, vtpm: bool) -> AgentPoolSpec {
        AgentPoolSpec {
            security_profile: Some(SecurityProfile {
                enable_secure_boot: sb,
                enable_vtpm: vtpm,
            }),
            ..AgentPoolSpec::default()
        }
    }

    fn rule(ctx: &PoolContext<'_>, spec: AgentPoolSpec) -> &'static str {
        match resolve_pool(ctx, "np", &spec, None) {
            Err(ControlError::Rule(r)) => r.rule(),
            other => panic!("expected a rule violation, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_azs() {
        let p = resolve_pool(&CTX, "np", &AgentPoolSpec::default(), None).unwrap();
        let q = &p.properties;
        assert_eq!(q.count, 3);
        assert_eq!(q.vm_size, "Standard_DS2_v2");
        assert_eq!(q.os_type, OsType::Linux);
        assert_eq!(q.os_sku, OsSku::Ubuntu);
        assert_eq!(q.mode, PoolMode::User);
        assert_eq!(q.security_profile, SecurityProfile::default());
        assert_eq!(q.upgrade_settings.max_surge, "1");
        assert_eq!(q.orchestrator_version, "1.30.6");
        assert!(q.gpu_profile.is_none());
        // Compatible configuration: a TL image although both features are off.
        assert_eq!(
            q.node_image_version,
            "AKSUbuntu-2204gen2TLcontainerd-202411.01.0"
        );
        assert!(p.id.ends_with("/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1/agentPools/np"));
    }

    #[test]
    fn every_rule_is_named() {
        let old = PoolContext {
            kubernetes_version: "1.25.1",
            ..CTX
        };
        assert_eq!(rule(&old, tl(false, true)), "kubernetes-version");
        let gen1 = AgentPoolSpec {
            vm_size: Some("Standard_A1_v2".into()),
            ..tl(true, false)
        };
        assert_eq!(rule(&CTX, gen1), "generation-2-only");
        let win = AgentPoolSpec {
            os_type: Some(OsType::Windows),
            ..tl(false, true)
        };
        assert_eq!(rule(&CTX, win), "no-windows");
        let fips = AgentPoolSpec {
            enable_fips: Some(true),
            ..tl(false, true)
        };
        assert_eq!(rule(&CTX, fips), "no-fips");
        let arm = AgentPoolSpec {
            vm_size: Some("Standard_D4ps_v5".into()),
            ..tl(false, true)
        };
        assert_eq!(rule(&CTX, arm), "no-arm64");
        let vn = PoolContext {
            virtual_nodes: true,
            ..CTX
        };
        assert_eq!(rule(&vn, tl(true, true)), "no-virtual-nodes");
        let avset = AgentPoolSpec {
            vm_set_type: Some(VmSetType::AvailabilitySet),
            ..tl(true, true)
        };
        assert_eq!(rule(&CTX, avset), "scale-sets-only");
        let gpu = AgentPoolSpec {
            vm_size: Some("Standard_NC6s_v3".into()),
            ..tl(true, false)
        };
        assert_eq!(rule(&CTX, gpu), "gpu-secure-boot-driver");
        let eph = AgentPoolSpec {
            vm_size: Some("Standard_D4s_v5".into()),
            os_disk_type: Some(OsDiskType::Ephemeral),
            ..tl(false, true)
        };
        assert_eq!(rule(&CTX, eph), "ephemeral-os-disk-size");
        assert_eq!(
            resolve_pool(&CTX, "NodePool", &AgentPoolSpec::default(), None)
                .unwrap_err()
                .code(),
            "InvalidAgentPoolName"
        );
    }

    #[test]
    fn tl_codes_are_the_aks_code() {
        let err = resolve_pool(
            &PoolContext {
                kubernetes_version: "1.24.9",
                ..CTX
            },
            "np",
            &tl(true, true),
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), "TrustedLaunchIncompatibleWithConfig");
        assert_eq!(err.http_status(), 400);
        assert!(err.to_string().contains("1.25.2"), "{err}");
    }

    #[test]
    fn incompatible_configurations_without_features_are_allowed_with_a_plain_image() {
        let gen1 = AgentPoolSpec {
            vm_size: Some("Standard_A1_v2".into()),
            ..AgentPoolSpec::default()
        };
        let p = resolve_pool(&CTX, "np", &gen1, None).unwrap();
        assert_eq!(
            p.properties.node_image_version,
            "AKSUbuntu-2204containerd-202411.01.0"
        );
        let arm = AgentPoolSpec {
            vm_size: Some("Standard_D4ps_v5".into()),
            ..AgentPoolSpec::default()
        };
        let p = resolve_pool(&CTX, "np", &arm, None).unwrap();
        assert!(p.properties.node_image_version.contains("gen2arm64"));
        let fips = AgentPoolSpec {
            enable_fips: Some(true),
            ..AgentPoolSpec::default()
        };
        let p = resolve_pool(&CTX, "np", &fips, None).unwrap();
        assert_eq!(
            p.properties.node_image_version,
            "AKSUbuntu-2204gen2containerd-202411.01.0"
        );
    }

    #[test]
    fn gpu_secure_boot_is_fine_when_the_driver_is_skipped() {
        let spec = AgentPoolSpec {
            vm_size: Some("Standard_NC6s_v3".into()),
            gpu_profile: Some(GpuProfile {
                driver: GpuDriver::None,
            }),
            ..tl(true, true)
        };
        let p = resolve_pool(&CTX, "gpu", &spec, None).unwrap();
        assert_eq!(p.properties.gpu_profile.unwrap().driver, GpuDriver::None);
        // vTPM alone on a GPU pool with the driver is fine: the rule is about Secure Boot.
        let spec = AgentPoolSpec {
            vm_size: Some("Standard_NC6s_v3".into()),
            ..tl(false, true)
        };
        assert!(resolve_pool(&CTX, "gpu", &spec, None).is_ok());
    }

    #[test]
    fn pool_names() {
        for ok in ["a", "np1", "abcdefghijk", "z9"] {
            assert!(check_pool_name(ok, OsType::Linux).is_ok(), "{ok}");
        }
        for bad in ["", "1np", "Np", "abcdefghijkl", "np-1", "np_1", "nó"] {
            assert!(check_pool_name(bad, OsType::Linux).is_err(), "{bad}");
        }
        assert!(check_pool_name("abcdefg", OsType::Windows).is_err());
    }

    #[test]
    fn update_keeps_previous_values_and_detects_reimage() {
        let spec = AgentPoolSpec {
            count: Some(2),
            vm_size: Some("Standard_D4s_v5".into()),
            ..AgentPoolSpec::default()
        };
        let before = resolve_pool(&CTX, "np", &spec, None).unwrap().properties;
        let after = resolve_pool(&CTX, "np", &tl(true, false), Some(&before))
            .unwrap()
            .properties;
        assert_eq!(after.count, 2);
        assert_eq!(after.vm_size, "Standard_D4s_v5");
        assert!(after.security_profile.enable_secure_boot);
        assert!(needs_reimage(&before, &after));
        let same = resolve_pool(&CTX, "np", &AgentPoolSpec::default(), Some(&after))
            .unwrap()
            .properties;
        assert!(!needs_reimage(&after, &same));
        assert!(check_update(&before, &after).is_ok());
        let bigger = AgentPoolProperties {
            vm_size: "Standard_D8s_v3".into(),
            ..after.clone()
        };
        assert!(check_update(&after, &bigger).is_err());
    }

    #[test]
    fn bad_parameters() {
        let big = AgentPoolSpec {
            count: Some(1001),
            ..AgentPoolSpec::default()
        };
        assert_eq!(
            resolve_pool(&CTX, "np", &big, None).unwrap_err().code(),
            "InvalidParameter"
        );
        let size = AgentPoolSpec {
            vm_size: Some("Standard_Bogus".into()),
            ..AgentPoolSpec::default()
        };
        assert_eq!(
            resolve_pool(&CTX, "np", &size, None).unwrap_err().code(),
            "InvalidVMSize"
        );
        let surge = AgentPoolSpec {
            upgrade_settings: Some(UpgradeSettings {
                max_surge: "0".into(),
            }),
            ..AgentPoolSpec::default()
        };
        assert_eq!(
            resolve_pool(&CTX, "np", &surge, None).unwrap_err().code(),
            "InvalidMaxSurge"
        );
    }
}

/// Resolves a cluster creation request into the cluster and its initial pools (the first one
/// `System`, named `nodepool1` by default as `az aks create` names it), checking every pool.
pub fn resolve_cluster(
    resource_group: &str,
    name: &str,
    spec: &ManagedClusterSpec,
) -> Result<(ManagedCluster, Vec<AgentPool>), ControlError> {
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !valid_name {
        return Err(ControlError::InvalidParameter(format!(
            "cluster name {name:?} must be 1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
        )));
    }
    let p = &spec.properties;
    let version_text = p
        .kubernetes_version
        .clone()
        .unwrap_or_else(|| crate::version::DEFAULT.to_string());
    let version = KubernetesVersion::parse(&version_text)?;
    let location = spec
        .location
        .clone()
        .unwrap_or_else(|| DEFAULT_LOCATION.to_string());
    let dns_prefix = p.dns_prefix.clone().unwrap_or_else(|| {
        let n: String = name.chars().take(10).collect();
        let g: String = resource_group.chars().take(16).collect();
        format!("{n}-{g}-{}", &SUBSCRIPTION[..6])
    });
    let cluster = ManagedCluster {
        id: ResourceId {
            resource_group: resource_group.to_string(),
            cluster: name.to_string(),
            agent_pool: None,
        }
        .to_string(),
        name: name.to_string(),
        kind: CLUSTER_TYPE.to_string(),
        location: location.clone(),
        properties: ManagedClusterProperties {
            provisioning_state: "Succeeded".to_string(),
            kubernetes_version: version.to_string(),
            current_kubernetes_version: version.resolved().to_string(),
            fqdn: format!(
                "{}.hcp.{location}.azmk8s.io",
                dns_prefix.to_ascii_lowercase()
            ),
            dns_prefix,
            node_resource_group: format!("MC_{resource_group}_{name}_{location}"),
            enable_rbac: true,
            addon_profiles: p.addon_profiles.clone(),
            agent_pool_profiles: Vec::new(),
            power_state: PowerState {
                code: "Running".to_string(),
            },
        },
    };
    let ctx = PoolContext {
        resource_group,
        cluster: name,
        kubernetes_version: &cluster.properties.kubernetes_version,
        virtual_nodes: cluster.virtual_nodes(),
    };
    let default_pool = [AgentPoolSpec::default()];
    let specs = if p.agent_pool_profiles.is_empty() {
        &default_pool[..]
    } else {
        &p.agent_pool_profiles[..]
    };
    let mut pools = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let pool_name = s
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_POOL_NAME.to_string());
        if pools.iter().any(|p: &AgentPool| p.name == pool_name) {
            return Err(ControlError::InvalidParameter(format!(
                "agent pool {pool_name:?} is listed twice"
            )));
        }
        let mut s = s.clone();
        if i == 0 && s.mode.is_none() {
            s.mode = Some(PoolMode::System);
        }
        pools.push(resolve_pool(&ctx, &pool_name, &s, None)?);
    }
    if !pools.iter().any(|p| p.properties.mode == PoolMode::System) {
        return Err(ControlError::InvalidParameter(
            "a cluster needs at least one System pool".to_string(),
        ));
    }
    Ok((cluster, pools))
}

/// `az aks create`'s first pool.
pub const DEFAULT_POOL_NAME: &str = "nodepool1";
/// Where clusters go when no location is given.
pub const DEFAULT_LOCATION: &str = "eastus";

#[cfg(test)]
mod cluster_tests {
    use super::*;
    use crate::model::{AddonProfile, VIRTUAL_NODE_ADDON};

    #[test]
    fn a_bare_cluster_gets_one_system_pool_of_three() {
        let (c, pools) = resolve_cluster("rg", "c1", &ManagedClusterSpec::default()).unwrap();
        assert_eq!(c.properties.kubernetes_version, crate::version::DEFAULT);
        assert_eq!(c.resource_group(), "rg");
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].name, "nodepool1");
        assert_eq!(pools[0].properties.mode, PoolMode::System);
        assert_eq!(pools[0].properties.count, 3);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "Microsoft.ContainerService/ManagedClusters");
        assert_eq!(v["properties"]["nodeResourceGroup"], "MC_rg_c1_eastus");
    }

    #[test]
    fn cluster_pools_obey_the_rules() {
        let mut spec = ManagedClusterSpec::default();
        spec.properties.kubernetes_version = Some("1.24.10".into());
        spec.properties.agent_pool_profiles = vec![AgentPoolSpec {
            security_profile: Some(SecurityProfile {
                enable_secure_boot: true,
                enable_vtpm: true,
            }),
            ..AgentPoolSpec::default()
        }];
        let err = resolve_cluster("rg", "c1", &spec).unwrap_err();
        assert_eq!(err.code(), "TrustedLaunchIncompatibleWithConfig");
        spec.properties.kubernetes_version = Some("1.29".into());
        spec.properties
            .addon_profiles
            .insert(VIRTUAL_NODE_ADDON.into(), AddonProfile { enabled: true });
        match resolve_cluster("rg", "c1", &spec).unwrap_err() {
            ControlError::Rule(r) => assert_eq!(r.rule(), "no-virtual-nodes"),
            e => panic!("{e:?}"),
        }
        assert!(resolve_cluster("rg", "bad name", &ManagedClusterSpec::default()).is_err());
    }
}
