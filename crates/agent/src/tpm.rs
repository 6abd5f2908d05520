//! The TPM 2.0 commands a node agent sends, marshalled with the `tpm` crate's types: the
//! EK (TCG default template) and its certificate, an attestation key, credential activation
//! with the EK's PolicySecret(endorsement) session, quotes and PCR reads.
//!
//! The agent is a TPM *client*: it runs against any TPM behind a [`Transport`] (an
//! in-process vTPM, swtpm over TCP, /dev/tpmrm0), never against the engine's internals.

use tpm::codec::{put_sized, Marshal};
use tpm::hash::HashAlg;
use tpm::object::{attr, PublicParms, Scheme, SymDefObject, TpmtPublic};
use tpm::types::alg;

/// Sends one command and returns its response.
pub trait Transport {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, String>;
}

/// A failed TPM command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    #[error("TPM transport: {0}")]
    Transport(String),
    #[error("{command}: TPM_RC {rc:#x}")]
    Rc { command: &'static str, rc: u32 },
    #[error("{command}: malformed response ({what})")]
    Malformed {
        command: &'static str,
        what: &'static str,
    },
}

/// How many times a command the TPM asked to retry is sent again.
const MAX_RETRIES: usize = 16;
const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
const RS_PW: u32 = 0x4000_0009;
const RH_OWNER: u32 = 0x4000_0001;
const RH_ENDORSEMENT: u32 = 0x4000_000B;
const RH_NULL: u32 = 0x4000_0007;

mod cc {
    pub const NV_READ: u32 = 0x14E;
    pub const NV_READ_PUBLIC: u32 = 0x169;
    pub const CREATE_PRIMARY: u32 = 0x131;
    pub const START_AUTH_SESSION: u32 = 0x176;
    pub const POLICY_SECRET: u32 = 0x151;
    pub const ACTIVATE_CREDENTIAL: u32 = 0x147;
    pub const QUOTE: u32 = 0x158;
    pub const PCR_READ: u32 = 0x17E;
    pub const FLUSH_CONTEXT: u32 = 0x165;
    pub const STARTUP: u32 = 0x144;
    pub const GET_CAPABILITY: u32 = 0x17A;
    pub const PCR_EXTEND: u32 = 0x182;
}

/// A successful response: the bytes after its header, and the command it answers.
struct Reply {
    bytes: Vec<u8>,
    command: &'static str,
}

impl Reply {
    /// A reader from `offset` (4 skips a session response's parameterSize).
    fn at(&self, offset: usize) -> Resp<'_> {
        Resp {
            b: &self.bytes,
            at: offset,
            command: self.command,
        }
    }
}

/// A response being read.
struct Resp<'a> {
    b: &'a [u8],
    at: usize,
    command: &'static str,
}

impl<'a> Resp<'a> {
    fn bad(&self, what: &'static str) -> TpmError {
        TpmError::Malformed {
            command: self.command,
            what,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        let end = self.at.checked_add(n).ok_or_else(|| self.bad("length"))?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or_else(|| self.bad("truncated"))?;
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, TpmError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, TpmError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn sized(&mut self) -> Result<&'a [u8], TpmError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

/// A password session with an empty password (the authorization area of one handle).
fn password() -> Vec<u8> {
    let mut s = RS_PW.to_be_bytes().to_vec();
    s.extend_from_slice(&[0, 0, 0, 0, 0]); // nonce size 0, attributes 0, hmac size 0
    s
}

fn policy_session(handle: u32) -> Vec<u8> {
    let mut s = handle.to_be_bytes().to_vec();
    s.extend_from_slice(&[0, 0, 0, 0, 0]);
    s
}

/// The TPM the agent talks to.
pub struct Client<T: Transport> {
    transport: T,
}

/// A loaded key: its handle, public area and Name.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    pub handle: u32,
    pub public: TpmtPublic,
    pub name: Vec<u8>,
}

/// What TPM2_Quote returned.
#[derive(Debug, Clone)]
pub struct Quote {
    /// TPMS_ATTEST (the TPM2B_ATTEST contents).
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub signature: Vec<u8>,
}

/// The agent's attestation key template: ECC P-256, ECDSA-SHA256, restricted signing,
/// fixedTPM/fixedParent/sensitiveDataOrigin/userWithAuth.
pub fn ak_template() -> TpmtPublic {
    TpmtPublic {
        name_alg: HashAlg::Sha256,
        attributes: attr::FIXED_TPM
            | attr::FIXED_PARENT
            | attr::SENSITIVE_DATA_ORIGIN
            | attr::USER_WITH_AUTH
            | attr::RESTRICTED
            | attr::SIGN_ENCRYPT,
        auth_policy: Vec::new(),
        parms: PublicParms::Ecc {
            symmetric: SymDefObject::Null,
            scheme: Scheme {
                scheme: alg::ECDSA,
                hash: Some(HashAlg::Sha256),
            },
            curve: 0x0003,
            kdf: None,
            x: Vec::new(),
            y: Vec::new(),
        },
    }
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T) -> Self {
        Client { transport }
    }

    /// Send a command: header, handles, the authorization area (when `sessions` is given),
    /// parameters. Returns the response after the header (and the parameterSize field for
    /// session responses).
    fn call(
        &mut self,
        command: &'static str,
        code: u32,
        handles: &[u32],
        sessions: Option<&[Vec<u8>]>,
        params: &[u8],
    ) -> Result<Reply, TpmError> {
        let mut body = Vec::new();
        for h in handles {
            body.extend_from_slice(&h.to_be_bytes());
        }
        if let Some(s) = sessions {
            let area: Vec<u8> = s.concat();
            body.extend_from_slice(&u32::try_from(area.len()).unwrap_or(0).to_be_bytes());
            body.extend_from_slice(&area);
        }
        body.extend_from_slice(params);
        let tag = if sessions.is_some() {
            ST_SESSIONS
        } else {
            ST_NO_SESSIONS
        };
        let mut cmd = tag.to_be_bytes().to_vec();
        cmd.extend_from_slice(&u32::try_from(10 + body.len()).unwrap_or(0).to_be_bytes());
        cmd.extend_from_slice(&code.to_be_bytes());
        cmd.extend_from_slice(&body);
        // TPM_RC_RETRY, _YIELDED and _TESTING: the command did not start; send it again (as
        // tpm2-tss does). libtpms answers RETRY to some ECC operations now and then.
        let mut resp = self.transport.transmit(&cmd).map_err(TpmError::Transport)?;
        for _ in 0..MAX_RETRIES {
            match resp
                .get(6..10)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            {
                Some(0x922 | 0x908 | 0x90A) => {
                    resp = self.transport.transmit(&cmd).map_err(TpmError::Transport)?;
                }
                _ => break,
            }
        }
        let mut r = Resp {
            b: &resp,
            at: 0,
            command,
        };
        let rtag = r.u16()?;
        let size = r.u32()? as usize;
        let rc = r.u32()?;
        if rc != 0 {
            return Err(TpmError::Rc { command, rc });
        }
        if size != resp.len() {
            return Err(r.bad("size field"));
        }
        let _ = rtag;
        Ok(Reply {
            bytes: resp.get(10..).unwrap_or_default().to_vec(),
            command,
        })
    }

    /// TPM2_CreatePrimary in `hierarchy` from `template`; returns the loaded key.
    pub fn create_primary(
        &mut self,
        hierarchy: u32,
        template: &TpmtPublic,
    ) -> Result<LoadedKey, TpmError> {
        let mut p = Vec::new();
        // TPM2B_SENSITIVE_CREATE: empty userAuth and data.
        p.extend_from_slice(&4u16.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        put_sized(&mut p, &template.to_bytes());
        p.extend_from_slice(&0u16.to_be_bytes()); // outsideInfo
        p.extend_from_slice(&0u32.to_be_bytes()); // creationPCR: none
        let resp = self.call(
            "TPM2_CreatePrimary",
            cc::CREATE_PRIMARY,
            &[hierarchy],
            Some(&[password()]),
            &p,
        )?;
        let mut r = resp.at(0);
        let handle = r.u32()?;
        let _param_size = r.u32()?;
        let public_bytes = r.sized()?.to_vec();
        let public = {
            use tpm::codec::Unmarshal;
            TpmtPublic::from_bytes(&public_bytes).map_err(|_| r.bad("outPublic"))?
        };
        let name = public.name();
        Ok(LoadedKey {
            handle,
            public,
            name,
        })
    }

    /// The TCG default ECC P-256 EK (as `tpm2_createek -G ecc` makes it).
    pub fn create_ek(&mut self) -> Result<LoadedKey, TpmError> {
        self.create_primary(RH_ENDORSEMENT, &tpm::ek::EkKind::EccP256.template())
    }

    /// The agent's AK, a primary key of the endorsement hierarchy: derived from the TPM's
    /// endorsement seed, the same AK every time this TPM is asked.
    pub fn create_ak(&mut self) -> Result<LoadedKey, TpmError> {
        self.create_primary(RH_ENDORSEMENT, &ak_template())
    }

    /// TPM2_FlushContext.
    pub fn flush(&mut self, handle: u32) -> Result<(), TpmError> {
        self.call(
            "TPM2_FlushContext",
            cc::FLUSH_CONTEXT,
            &[],
            None,
            &handle.to_be_bytes(),
        )
        .map(|_| ())
    }

    /// The contents of NV index `index`, read with owner authorization.
    pub fn nv_read_all(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        let resp = self.call(
            "TPM2_NV_ReadPublic",
            cc::NV_READ_PUBLIC,
            &[index],
            None,
            &[],
        )?;
        let mut r = resp.at(0);
        let nv_public = r.sized()?;
        // TPMS_NV_PUBLIC: nvIndex(4) nameAlg(2) attributes(4) authPolicy(2+n) dataSize(2).
        let mut p = Resp {
            b: nv_public,
            at: 8 + 2,
            command: "TPM2_NV_ReadPublic",
        };
        let _policy = p.sized()?;
        let size = usize::from(p.u16()?);
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let chunk = (size - out.len()).min(512);
            let mut params = u16::try_from(chunk).unwrap_or(0).to_be_bytes().to_vec();
            params.extend_from_slice(&u16::try_from(out.len()).unwrap_or(0).to_be_bytes());
            let resp = self.call(
                "TPM2_NV_Read",
                cc::NV_READ,
                &[RH_OWNER, index],
                Some(&[password()]),
                &params,
            )?;
            let mut r = resp.at(4);
            let data = r.sized()?;
            if data.is_empty() {
                return Err(r.bad("empty read"));
            }
            out.extend_from_slice(data);
        }
        Ok(out)
    }

    /// TPM2_ActivateCredential of `ak` under `ek`, with the EK's PolicySecret(endorsement)
    /// session (the TCG EK's authPolicy): the credential the registrar protected.
    pub fn activate_credential(
        &mut self,
        ak: &LoadedKey,
        ek: &LoadedKey,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        // StartAuthSession: no salt, no bind, a policy session, no symmetric, SHA-256.
        let mut p = Vec::new();
        put_sized(&mut p, &[0x5a; 16]); // nonceCaller
        p.extend_from_slice(&0u16.to_be_bytes()); // encryptedSalt
        p.push(0x01); // TPM_SE_POLICY
        p.extend_from_slice(&alg::NULL.to_be_bytes()); // symmetric
        p.extend_from_slice(&alg::SHA256.to_be_bytes());
        let resp = self.call(
            "TPM2_StartAuthSession",
            cc::START_AUTH_SESSION,
            &[RH_NULL, RH_NULL],
            None,
            &p,
        )?;
        let session = resp.at(0).u32()?;
        let result = (|| {
            // PolicySecret(endorsement): nonceTPM, cpHashA, policyRef empty; expiration 0.
            let mut p = Vec::new();
            p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            p.extend_from_slice(&0i32.to_be_bytes());
            self.call(
                "TPM2_PolicySecret",
                cc::POLICY_SECRET,
                &[RH_ENDORSEMENT, session],
                Some(&[password()]),
                &p,
            )?;
            let mut p = Vec::new();
            put_sized(&mut p, id_object);
            put_sized(&mut p, encrypted_secret);
            let resp = self.call(
                "TPM2_ActivateCredential",
                cc::ACTIVATE_CREDENTIAL,
                &[ak.handle, ek.handle],
                Some(&[password(), policy_session(session)]),
                &p,
            )?;
            let mut r = resp.at(4);
            Ok(r.sized()?.to_vec())
        })();
        // The session ends with the command (continueSession clear), or is flushed here.
        let _ = self.flush(session);
        result
    }

    /// TPM2_Quote of `pcrs` (bank, indices) with `ak`, over the verifier's `nonce`.
    pub fn quote(
        &mut self,
        ak: &LoadedKey,
        nonce: &[u8],
        pcrs: &[(HashAlg, Vec<u8>)],
    ) -> Result<Quote, TpmError> {
        let mut p = Vec::new();
        put_sized(&mut p, nonce);
        p.extend_from_slice(&alg::NULL.to_be_bytes()); // inScheme: the key's own
        p.extend_from_slice(&pcr_selection(pcrs));
        let resp = self.call(
            "TPM2_Quote",
            cc::QUOTE,
            &[ak.handle],
            Some(&[password()]),
            &p,
        )?;
        let mut r = resp.at(0);
        // parameterSize bounds the parameters; the authorization area follows them.
        let params = r.u32()? as usize;
        let attest = r.sized()?.to_vec();
        let end = params
            .checked_add(4)
            .ok_or_else(|| r.bad("parameterSize"))?;
        let signature =
            r.b.get(r.at..end)
                .ok_or_else(|| r.bad("parameterSize"))?
                .to_vec();
        Ok(Quote { attest, signature })
    }

    /// TPM2_Startup(CLEAR), as firmware sends it after _TPM_Init.
    pub fn startup_clear(&mut self) -> Result<(), TpmError> {
        self.call("TPM2_Startup", cc::STARTUP, &[], None, &0u16.to_be_bytes())
            .map(|_| ())
    }

    /// The PCR banks with any PCR allocated (TPM2_GetCapability(TPM_CAP_PCRS)).
    pub fn pcr_banks(&mut self) -> Result<Vec<u16>, TpmError> {
        let mut p = 5u32.to_be_bytes().to_vec(); // TPM_CAP_PCRS
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&16u32.to_be_bytes());
        let resp = self.call("TPM2_GetCapability", cc::GET_CAPABILITY, &[], None, &p)?;
        // moreData, capability, TPML_PCR_SELECTION.
        let mut r = resp.at(1 + 4);
        let count = r.u32()?;
        let mut banks = Vec::new();
        for _ in 0..count.min(16) {
            let alg = r.u16()?;
            let size = usize::from(r.take(1)?.first().copied().unwrap_or(0));
            if r.take(size)?.iter().any(|b| *b != 0) {
                banks.push(alg);
            }
        }
        Ok(banks)
    }

    /// TPM2_PCR_Extend(pcr, digests) with an empty-password session (PCRs 0-15).
    pub fn pcr_extend(&mut self, pcr: u32, digests: &[(u16, Vec<u8>)]) -> Result<(), TpmError> {
        let mut p = u32::try_from(digests.len())
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        for (alg, d) in digests {
            p.extend_from_slice(&alg.to_be_bytes());
            p.extend_from_slice(d);
        }
        self.call(
            "TPM2_PCR_Extend",
            cc::PCR_EXTEND,
            &[pcr],
            Some(&[password()]),
            &p,
        )
        .map(|_| ())
    }

    /// TPM2_PCR_Read of one PCR.
    pub fn pcr_read(&mut self, bank: HashAlg, pcr: u8) -> Result<Vec<u8>, TpmError> {
        let resp = self.call(
            "TPM2_PCR_Read",
            cc::PCR_READ,
            &[],
            None,
            &pcr_selection(&[(bank, vec![pcr])]),
        )?;
        // pcrUpdateCounter, TPML_PCR_SELECTION (count + one of 6 bytes), TPML_DIGEST.
        let mut r = resp.at(4 + 4 + 6);
        if r.u32()? != 1 {
            return Err(r.bad("digest count"));
        }
        Ok(r.sized()?.to_vec())
    }
}

/// TPML_PCR_SELECTION for these banks and PCR indices.
fn pcr_selection(pcrs: &[(HashAlg, Vec<u8>)]) -> Vec<u8> {
    let mut out = u32::try_from(pcrs.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    for (bank, indices) in pcrs {
        out.extend_from_slice(&bank.id().to_be_bytes());
        let mut bits = [0u8; 3];
        for i in indices {
            if let Some(b) = bits.get_mut(usize::from(*i / 8)) {
                *b |= 1 << (i % 8);
            }
        }
        out.push(3);
        out.extend_from_slice(&bits);
    }
    out
}

/// What enrollment needs from a TPM: the ECC EK and its certificate, and the AK.
pub struct Identity {
    pub ek: LoadedKey,
    pub ak: LoadedKey,
    /// The EK certificate (DER) from NV index 0x01C0000A.
    pub ek_certificate: Vec<u8>,
}

/// What one attestation needs from a TPM: a quote over the nonce and the quoted values.
pub struct Evidence {
    pub quote: Quote,
    /// (bank, PCR, value) for every PCR quoted.
    pub pcrs: Vec<(HashAlg, u8, Vec<u8>)>,
}

impl<T: Transport> Client<T> {
    /// The EK, its certificate and the AK (both keys loaded; flush them when done).
    pub fn identity(&mut self) -> Result<Identity, TpmError> {
        let ek = self.create_ek()?;
        let ek_certificate = self.nv_read_all(tpm::ek::ECC_EK_CERT_INDEX)?;
        let ak = self.create_ak()?;
        Ok(Identity {
            ek,
            ak,
            ek_certificate,
        })
    }

    /// A quote of `pcrs` in `bank` over `nonce`, and the values quoted. The PCRs are read
    /// after the quote: a verifier rejects them if an extend came in between.
    pub fn evidence(
        &mut self,
        ak: &LoadedKey,
        nonce: &[u8],
        bank: HashAlg,
        pcrs: &[u8],
    ) -> Result<Evidence, TpmError> {
        let quote = self.quote(ak, nonce, &[(bank, pcrs.to_vec())])?;
        let mut values = Vec::with_capacity(pcrs.len());
        for &pcr in pcrs {
            values.push((bank, pcr, self.pcr_read(bank, pcr)?));
        }
        Ok(Evidence {
            quote,
            pcrs: values,
        })
    }
}
