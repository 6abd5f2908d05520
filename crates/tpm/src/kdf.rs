//! The TPM's key derivation functions (Part 1, 11.4.10): KDFa, SP 800-108 counter mode over
//! HMAC, and KDFe, the SP 800-56A concatenation KDF used with ECDH.

use crate::hash::HashAlg;

/// KDFa(hashAlg, key, label, contextU, contextV, bits): `bits / 8` bytes (rounded up, with the
/// unused high bits of the first byte cleared). A label is hashed followed by one zero octet,
/// as the reference implementation does for labels not already zero-terminated.
pub fn kdfa(
    alg: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let label = label.strip_suffix(&[0]).unwrap_or(label);
    let mut out = Vec::with_capacity(bytes + alg.size());
    let mut counter: u32 = 0;
    while out.len() < bytes {
        counter = counter.wrapping_add(1);
        out.extend_from_slice(&alg.hmac(
            key,
            &[
                &counter.to_be_bytes(),
                label,
                &[0],
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        ));
    }
    out.truncate(bytes);
    mask_high_bits(&mut out, bits);
    out
}

/// KDFe(hashAlg, Z, label, partyUInfo, partyVInfo, bits) (Part 1, 11.4.10.3).
pub fn kdfe(
    alg: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    let bytes = bits.div_ceil(8) as usize;
    let label = label.strip_suffix(&[0]).unwrap_or(label);
    let mut out = Vec::with_capacity(bytes + alg.size());
    let mut counter: u32 = 0;
    while out.len() < bytes {
        counter = counter.wrapping_add(1);
        out.extend_from_slice(&alg.digest(&[
            &counter.to_be_bytes(),
            z,
            label,
            &[0],
            party_u,
            party_v,
        ]));
    }
    out.truncate(bytes);
    mask_high_bits(&mut out, bits);
    out
}

fn mask_high_bits(out: &mut [u8], bits: u32) {
    let extra = bits % 8;
    if extra != 0 {
        if let Some(first) = out.first_mut() {
            *first &= (1u8 << extra) - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TPM reference implementation's KDFa self-test vector (KdfTestData.h): 20-byte key,
    /// label "KDFSELFTESTLABEL", two 8-byte contexts, 160 bits out.
    #[test]
    fn kdfa_reference_self_test_vectors() {
        let key = hex::decode("271fa08bbdc5060ec3dfa928ff9b73123a12da0c").unwrap();
        let u = hex::decode("ce244f395dca7391").unwrap();
        let v = hex::decode("da504031ddf12e83").unwrap();
        let label = b"KDFSELFTESTLABEL\0";
        assert_eq!(
            hex::encode(kdfa(HashAlg::Sha512, &key, label, &u, &v, 160)),
            "8be2c1b85b78569b9fa759f5857c56d684810fd3"
        );
        assert_eq!(
            hex::encode(kdfa(HashAlg::Sha384, &key, label, &u, &v, 160)),
            "1dce70c9113eb2dba47bd9cfc72bf46f45b09312"
        );
        assert_eq!(
            hex::encode(kdfa(
                HashAlg::Sha256,
                &key,
                b"KDFSELFTESTLABEL",
                &u,
                &v,
                160
            )),
            "bb0259e1c8ba607e6a2cd704b69a902e9ade84c4"
        );
        assert_eq!(
            hex::encode(kdfa(HashAlg::Sha1, &key, label, &u, &v, 160)),
            "55b5a7184aa07423c47dae766c26a2377d7cf851"
        );
    }

    #[test]
    fn odd_bit_counts_clear_the_high_bits() {
        let k = kdfa(HashAlg::Sha256, b"k", b"L", b"", b"", 9);
        assert_eq!(k.len(), 2);
        assert!(k[0] <= 1);
        let e = kdfe(HashAlg::Sha256, b"z", b"L", b"", b"", 12);
        assert!(e[0] <= 0x0F);
    }
}
