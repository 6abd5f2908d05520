//! The EV_NO_ACTION events that describe the log itself: the Spec ID event that opens a
//! crypto-agile log (PFP 10.4.5.1, TCG_EfiSpecIDEvent) and the Startup Locality event
//! (PFP 10.4.5.3). Parsed from borrowed bytes with explicit caps.

use crate::error::{Error, Problem};
use crate::reader::{Reader, UintnWidth};
use crate::AlgorithmId;

/// The 16-byte signature of a crypto-agile log's first event ("Spec ID Event03\0").
pub const SPEC_ID_EVENT03: &[u8; 16] = b"Spec ID Event03\0";
/// The signature of the Startup Locality event ("StartupLocality\0").
pub const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// At most this many banks in a Spec ID event (TPMs implement a handful).
pub const MAX_ALGORITHMS: u32 = 32;
/// Largest digest size accepted for an algorithm this crate does not know.
pub const MAX_DIGEST_SIZE: u16 = 128;

/// TCG_EfiSpecIdEventAlgorithmSize (PFP 10.4.5.1): one bank and its digest size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdAlgorithm {
    pub algorithm_id: AlgorithmId,
    pub digest_size: u16,
}

/// TCG_EfiSpecIDEvent (PFP 10.4.5.1): the event data of a crypto-agile log's first event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    pub platform_class: u32,
    pub spec_version_minor: u8,
    pub spec_version_major: u8,
    pub spec_errata: u8,
    /// 1: UINTN is 32 bits; 2: 64 bits.
    pub uintn_size: u8,
    pub algorithms: Vec<SpecIdAlgorithm>,
    pub vendor_info: Vec<u8>,
}

impl SpecIdEvent {
    /// Parse the event data; `None` if it does not carry the Event03 signature.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Option<Self>, Error> {
        if !r.rest().starts_with(SPEC_ID_EVENT03) {
            return Ok(None);
        }
        r.take(16, "Spec ID signature")?;
        let platform_class = r.u32("platformClass")?;
        let spec_version_minor = r.u8("specVersionMinor")?;
        let spec_version_major = r.u8("specVersionMajor")?;
        let spec_errata = r.u8("specErrata")?;
        let uintn_size = r.u8("uintnSize")?;
        let count = r.u32("numberOfAlgorithms")?;
        let count = r.capped(count.into(), MAX_ALGORITHMS.into(), "numberOfAlgorithms")?;
        if count == 0 {
            return Err(r.error(Problem::BadSpecId("no algorithms")));
        }
        let mut algorithms: Vec<SpecIdAlgorithm> = Vec::new();
        for _ in 0..count {
            let at = r.clone();
            let algorithm_id = AlgorithmId(r.u16("algorithmId")?);
            let digest_size = r.u16("digestSize")?;
            if let Some(known) = algorithm_id.known_size() {
                if usize::from(digest_size) != known {
                    return Err(at.error(Problem::BadSpecId(
                        "digest size differs from the algorithm's",
                    )));
                }
            }
            if digest_size == 0 || digest_size > MAX_DIGEST_SIZE {
                return Err(at.error(Problem::BadSpecId("digest size 0 or above 128")));
            }
            if algorithms.iter().any(|a| a.algorithm_id == algorithm_id) {
                return Err(at.error(Problem::BadSpecId("algorithm listed twice")));
            }
            algorithms.push(SpecIdAlgorithm {
                algorithm_id,
                digest_size,
            });
        }
        let vendor_size = r.u8("vendorInfoSize")?;
        let vendor_info = r.take(vendor_size.into(), "vendorInfo")?.to_vec();
        if !r.is_empty() {
            return Err(r.error(Problem::BadSpecId("bytes after vendorInfo")));
        }
        Ok(Some(Self {
            platform_class,
            spec_version_minor,
            spec_version_major,
            spec_errata,
            uintn_size,
            algorithms,
            vendor_info,
        }))
    }

    /// The event data this was parsed from (byte for byte).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = SPEC_ID_EVENT03.to_vec();
        out.extend_from_slice(&self.platform_class.to_le_bytes());
        out.extend_from_slice(&[
            self.spec_version_minor,
            self.spec_version_major,
            self.spec_errata,
            self.uintn_size,
        ]);
        let count = u32::try_from(self.algorithms.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for a in &self.algorithms {
            out.extend_from_slice(&a.algorithm_id.0.to_le_bytes());
            out.extend_from_slice(&a.digest_size.to_le_bytes());
        }
        let vendor = self.vendor_info.get(..255).unwrap_or(&self.vendor_info);
        out.push(u8::try_from(vendor.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(vendor);
        out
    }

    /// The digest size this log declares for `alg`.
    pub fn digest_size(&self, alg: AlgorithmId) -> Option<u16> {
        self.algorithms
            .iter()
            .find(|a| a.algorithm_id == alg)
            .map(|a| a.digest_size)
    }

    pub(crate) fn uintn(&self) -> UintnWidth {
        if self.uintn_size == 1 {
            UintnWidth::U32
        } else {
            UintnWidth::U64
        }
    }
}

/// TCG_EfiStartupLocalityEvent (PFP 10.4.5.3): the locality at which TPM2_Startup ran,
/// which sets the initial value of PCR 0 (its last byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupLocality(pub u8);

impl StartupLocality {
    /// The locality if `data` is a Startup Locality event's data.
    pub fn parse(data: &[u8]) -> Option<Self> {
        match data.strip_prefix(STARTUP_LOCALITY.as_slice()) {
            Some([locality]) => Some(Self(*locality)),
            _ => None,
        }
    }

    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = STARTUP_LOCALITY.to_vec();
        out.push(self.0);
        out
    }
}
