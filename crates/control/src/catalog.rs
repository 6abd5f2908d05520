//! The VM-size catalog: which sizes exist, their hypervisor generations, CPU architecture, GPU
//! and whether an ephemeral OS disk fits them under Trusted Launch. Data only; the rules read it.

use serde::Serialize;

/// CPU architecture of a VM size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Architecture {
    #[serde(rename = "x64")]
    X64,
    #[serde(rename = "Arm64")]
    Arm64,
}

/// One VM size as the catalog knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmSize {
    pub name: &'static str,
    pub vcpus: u32,
    pub memory_gib: u32,
    /// Runs Generation 1 (BIOS) images.
    pub gen1: bool,
    /// Runs Generation 2 (UEFI) images: the only ones Trusted Launch boots.
    pub gen2: bool,
    pub architecture: Architecture,
    pub gpu: bool,
    /// An ephemeral OS disk (cache or temp placement) fits this size with Trusted Launch.
    pub ephemeral_os_disk_trusted_launch: bool,
}

const fn size(
    name: &'static str,
    vcpus: u32,
    memory_gib: u32,
    gens: (bool, bool),
    architecture: Architecture,
    gpu: bool,
    ephemeral_os_disk_trusted_launch: bool,
) -> VmSize {
    VmSize {
        name,
        vcpus,
        memory_gib,
        gen1: gens.0,
        gen2: gens.1,
        architecture,
        gpu,
        ephemeral_os_disk_trusted_launch,
    }
}

use Architecture::{Arm64, X64};
const BOTH: (bool, bool) = (true, true);
const GEN1: (bool, bool) = (true, false);
const GEN2: (bool, bool) = (false, true);

/// Every size the management plane accepts, by name.
pub const CATALOG: &[VmSize] = &[
    size("Standard_A1_v2", 1, 2, GEN1, X64, false, false),
    size("Standard_A2_v2", 2, 4, GEN1, X64, false, false),
    size("Standard_B2s", 2, 4, BOTH, X64, false, false),
    size("Standard_DS2_v2", 2, 7, BOTH, X64, false, true),
    size("Standard_D2s_v3", 2, 8, BOTH, X64, false, true),
    size("Standard_D4s_v3", 4, 16, BOTH, X64, false, true),
    size("Standard_D8s_v3", 8, 32, BOTH, X64, false, true),
    size("Standard_D2s_v5", 2, 8, BOTH, X64, false, false),
    size("Standard_D4s_v5", 4, 16, BOTH, X64, false, false),
    size("Standard_D4ds_v5", 4, 16, BOTH, X64, false, true),
    size("Standard_D8ds_v5", 8, 32, BOTH, X64, false, true),
    size("Standard_E4s_v3", 4, 32, BOTH, X64, false, true),
    size("Standard_D2ps_v5", 2, 8, GEN2, Arm64, false, false),
    size("Standard_D4ps_v5", 4, 16, GEN2, Arm64, false, false),
    size("Standard_D4pds_v5", 4, 16, GEN2, Arm64, false, true),
    size("Standard_NC6s_v3", 6, 112, BOTH, X64, true, true),
    size("Standard_NC4as_T4_v3", 4, 28, BOTH, X64, true, true),
];

/// The size named `name`, compared without regard to case as Azure does.
pub fn lookup(name: &str) -> Option<&'static VmSize> {
    CATALOG.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_sizes_are_there_with_their_traits() {
        let d2 = lookup("standard_d2s_v3").unwrap();
        assert!(d2.gen2 && !d2.gpu && d2.architecture == X64);
        let a1 = lookup("Standard_A1_v2").unwrap();
        assert!(a1.gen1 && !a1.gen2);
        assert_eq!(lookup("Standard_D4ps_v5").unwrap().architecture, Arm64);
        assert!(lookup("Standard_NC6s_v3").unwrap().gpu);
        assert!(
            !lookup("Standard_D4s_v5")
                .unwrap()
                .ephemeral_os_disk_trusted_launch
        );
        assert!(lookup("Standard_Nope").is_none());
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in CATALOG.iter().enumerate() {
            for b in CATALOG.iter().skip(i + 1) {
                assert!(!a.name.eq_ignore_ascii_case(b.name), "{}", a.name);
            }
        }
    }
}
