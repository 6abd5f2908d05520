//! PE/COFF images as firmware and shim receive them.
//!
//! Input: an image. Checked: parsing, both Authenticode digests, the certificate table walk,
//! the `.sbat` section, every embedded signature's parse and a whole `verify_image` under
//! both loaders (empty databases) never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secureboot::pe::{DigestFlavor, PeImage};
use secureboot::{authenticode::AuthenticodeSignature, Databases, HashAlgorithm, Loader};

fuzz_target!(|data: &[u8]| {
    let Ok(pe) = PeImage::parse(data) else {
        return;
    };
    for flavor in [DigestFlavor::Firmware, DigestFlavor::Shim] {
        let _ = pe.authenticode_digest(HashAlgorithm::Sha256, flavor);
    }
    if let Ok(Some(sbat)) = pe.sbat_section() {
        let _ = secureboot::sbat::parse_section(sbat);
    }
    if let Ok(certs) = pe.certificates() {
        for c in certs {
            let _ = AuthenticodeSignature::parse(c.data, c.offset);
        }
    }
    let dbs = Databases::default();
    let _ = secureboot::verify_image(&dbs, data, &Loader::Firmware);
    let shim = secureboot::ShimPolicy::default();
    let _ = secureboot::verify_image(&dbs, data, &Loader::Shim(Box::new(shim)));
});
