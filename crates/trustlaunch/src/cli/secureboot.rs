//! `trustlaunch secureboot`: Secure Boot verdicts, Authenticode digests and OVMF variable
//! stores from the command line, through the `secureboot` crate. Reads files; decides nothing
//! itself (every verdict comes from `secureboot::verify_image` or `module_sig::verify`).
//!
//! Exit status of `verify`: 0 allowed, 1 denied, 2 usage or I/O error.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use secureboot::authvar;
use secureboot::esl::{self, EfiTime, SignatureList};
use secureboot::guid::{self, Guid};
use secureboot::module_sig::{self, ModuleVerdict};
use secureboot::pe::{DigestFlavor, PeImage};
use secureboot::sbat::SbatLevel;
use secureboot::varstore::{self, VariableStore};
use secureboot::{Databases, HashAlgorithm, Loader, ShimPolicy, Verdict};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The owner GUID of signature entries this command makes from bare certificates.
const OWNER: Guid = Guid::parse("5472bd7e-5c1d-4b8e-9a44-7472757374ff");

#[derive(Debug, Subcommand)]
pub enum SecurebootCommand {
    #[command(about = VERIFY_ABOUT)]
    Verify(VerifyArgs),
    /// Print IMAGE's Authenticode digest in lowercase hex (EDK2's computation; with
    /// --shim-unsigned, shim's, which pads an unsigned image to a multiple of 8 bytes).
    Hash(HashArgs),
    /// Sign a PE/COFF image with an Authenticode signature, as sbsign does (an unsigned image
    /// is padded to 8 bytes first; a signed one gets one more signature).
    Sign(SignArgs),
    /// Sign a kernel module with an appended signature, as the kernel's sign-file does.
    SignModule(SignModuleArgs),
    /// Make an .auth file (EFI_VARIABLE_AUTHENTICATION_2 + signature lists) that writes ESL to
    /// the Secure Boot variable NAME (PK, KEK, db, dbx), signed as efitools'
    /// sign-efi-sig-list signs.
    SignVariable(SignVariableArgs),
    /// Check an .auth file for variable NAME against a PK or KEK certificate, as EDK2 does
    /// before it writes the variable. Exit status: 0 valid, 1 not, 2 usage or I/O error.
    VerifyVariable(VerifyVariableArgs),
    /// Write PK, KEK, db and/or dbx into a copy of an OVMF_VARS image (each given variable is
    /// replaced by the signature lists of its files: certificates, ESLs or .auth payloads),
    /// as the firmware's variable driver writes them.
    Enroll(EnrollArgs),
    /// OVMF variable stores: `vars list VARS`, `vars extract VARS --out DIR`, `vars enroll
    /// VARS --pk … --out NEW.fd` (`vars VARS [--extract DIR]` lists, and extracts, too).
    Vars(VarsArgs),
    /// A new Secure Boot key hierarchy: `keys new --out DIR`.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Kernel modules: `module verify MODULE (--vars … [--shim …] | --keyring CERT…)` and
    /// `module sign`.
    #[command(subcommand)]
    Module(ModuleCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Write PK.key PK.crt KEK.key KEK.crt db.key db.crt into DIR: RSA-2048 keys (PEM, 0600)
    /// and self-signed X.509 certificates (SHA-256, ten years), the form OVMF and shim take.
    /// Enroll them with `vars enroll`, sign images with `sign --key db.key --cert db.crt`.
    New {
        #[arg(long, visible_alias = "output", value_name = "DIR")]
        out: PathBuf,
        /// The certificates' subject prefix (`CN=<NAME> PK` ...).
        #[arg(long, default_value = "trustlaunch")]
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ModuleCommand {
    /// `verify` for a kernel module (same arguments; exit 0 allowed, 1 denied, 2 error).
    Verify(VerifyArgs),
    /// Sign a kernel module, as the kernel's sign-file does.
    Sign(SignModuleArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum VarsCommand {
    /// List the variables, one a line: `GUID live|deleted attributes=0xN size=N NAME`.
    List { vars: PathBuf },
    /// Write PK.esl, KEK.esl, db.esl and dbx.esl into DIR.
    Extract {
        vars: PathBuf,
        #[arg(long, visible_alias = "output", value_name = "DIR")]
        out: PathBuf,
    },
    /// Write PK, KEK, db and/or dbx into a copy of VARS (as `enroll`).
    Enroll(EnrollArgs),
}

/// `secureboot verify`'s description (shared with the parser of that command alone).
pub const VERIFY_ABOUT: &str =
    "Decide whether IMAGE may run, as OVMF's firmware (EDK2) or, with --shim, as that shim \
     decides. IMAGE may be a PE/COFF image (shim, grub, a kernel) or a kernel module (.ko, \
     detected by its ELF header): a module is checked against a keyring made of the db \
     certificates, shim's vendor certificate, --mok lists, --key certificates and the \
     certificates built into --kernel-keys. Exit status: 0 allowed (prints the authority), 1 \
     denied (prints the reason), 2 usage or I/O error";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image (PE/COFF) or kernel module (ELF) to check.
    image: PathBuf,
    /// Take db and dbx from this OVMF_VARS image.
    #[arg(long, conflicts_with = "db", required_unless_present_any = ["db", "key", "kernel_keys"])]
    vars: Option<PathBuf>,
    /// Allowed signatures: a PEM or DER certificate, an ESL, or an .auth file (repeatable).
    #[arg(long, num_args = 1..)]
    db: Vec<PathBuf>,
    /// Forbidden signatures, in the same forms as --db (repeatable; adds to --vars' dbx).
    #[arg(long, num_args = 1..)]
    dbx: Vec<PathBuf>,
    /// Verify IMAGE as loaded by this shim binary (its vendor certificate, vendor dbx and
    /// built-in SbatLevel) on top of the firmware databases.
    #[arg(long)]
    shim: Option<PathBuf>,
    /// With --shim: the SbatLevel in force (text: `sbat,1,DATE` then `component,generation`
    /// lines) instead of shim's built-in automatic level.
    #[arg(long, requires = "shim")]
    sbat_level: Option<PathBuf>,
    /// With --shim: MokList entries, in the same forms as --db (repeatable).
    #[arg(long, requires = "shim", num_args = 1..)]
    mok: Vec<PathBuf>,
    /// With --shim: MokListX entries (repeatable).
    #[arg(long, requires = "shim", num_args = 1..)]
    mokx: Vec<PathBuf>,
    /// With --shim: IMAGE is verified through shim's lock protocol (grub checking a kernel),
    /// where an image without .sbat is accepted.
    #[arg(long, requires = "shim")]
    shim_protocol: bool,
    /// Modules: extra keyring certificates (PEM, DER or ESL; repeatable).
    #[arg(long, visible_alias = "keyring", num_args = 1..)]
    key: Vec<PathBuf>,
    /// Modules: a kernel image (a bzImage such as /boot/vmlinuz-*, decompressed with the
    /// system's xz/gzip/zstd/lz4/lzma/bzip2/lzop, or a vmlinux) whose built-in certificates
    /// join the keyring.
    #[arg(long)]
    kernel_keys: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    image: PathBuf,
    /// sha1, sha256, sha384 or sha512.
    #[arg(long, default_value = "sha256")]
    alg: String,
    /// shim's computation (zero padding of an unsigned image to 8 bytes) instead of EDK2's.
    #[arg(long)]
    shim_unsigned: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    image: PathBuf,
    /// The signer's private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The signer's certificate (PEM or DER).
    #[arg(long)]
    cert: PathBuf,
    /// More certificates to carry in the signature (intermediates; PEM, repeatable).
    #[arg(long, num_args = 1..)]
    addcert: Vec<PathBuf>,
    /// sha256 (default), sha384, sha512 or sha1.
    #[arg(long, default_value = "sha256")]
    alg: String,
    #[arg(long, visible_alias = "out")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignModuleArgs {
    module: PathBuf,
    /// The signer's private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The signer's certificate (PEM or DER).
    #[arg(long)]
    cert: PathBuf,
    #[arg(long, visible_alias = "out")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignVariableArgs {
    /// PK, KEK, db, dbx (or any name with --vendor).
    name: String,
    /// The new value: signature lists (an ESL file).
    esl: PathBuf,
    /// The signer's private key (PEM): PK's for PK and KEK, a KEK's for db and dbx.
    #[arg(long)]
    key: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    /// The update's timestamp, `YYYY-MM-DD HH:MM:SS` (UTC); now when absent.
    #[arg(long)]
    timestamp: Option<String>,
    /// The vendor GUID (default: the one the UEFI specification gives NAME).
    #[arg(long)]
    vendor: Option<String>,
    #[arg(long, visible_alias = "out")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyVariableArgs {
    auth: PathBuf,
    #[arg(long)]
    name: String,
    /// The PK or KEK certificate (PEM or DER) the update must chain to.
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    vendor: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The OVMF_VARS image to start from (it is not modified).
    vars: PathBuf,
    #[arg(long, num_args = 1..)]
    pk: Vec<PathBuf>,
    #[arg(long, num_args = 1..)]
    kek: Vec<PathBuf>,
    #[arg(long, num_args = 1..)]
    db: Vec<PathBuf>,
    #[arg(long, num_args = 1..)]
    dbx: Vec<PathBuf>,
    /// The variables' timestamp, `YYYY-MM-DD HH:MM:SS` (UTC); now when absent.
    #[arg(long)]
    timestamp: Option<String>,
    #[arg(long, visible_alias = "out")]
    output: PathBuf,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct VarsArgs {
    #[command(subcommand)]
    command: Option<VarsCommand>,
    /// An OVMF_VARS image to list (the short form of `vars list`).
    #[arg(required = true)]
    vars: Option<PathBuf>,
    /// Write PK.esl, KEK.esl, db.esl and dbx.esl into this directory.
    #[arg(long)]
    extract: Option<PathBuf>,
}

pub fn run(cmd: SecurebootCommand) -> Result<ExitCode> {
    let result = match cmd {
        SecurebootCommand::Verify(a) => verify(&a),
        SecurebootCommand::Hash(a) => hash(&a),
        SecurebootCommand::Vars(a) => match a.command {
            Some(VarsCommand::List { vars: v }) => list_vars(&v, None),
            Some(VarsCommand::Extract { vars: v, out }) => extract_vars(&v, &out),
            Some(VarsCommand::Enroll(e)) => enroll(&e),
            None => match &a.vars {
                Some(v) => list_vars(v, a.extract.as_deref()),
                None => Err(anyhow::anyhow!("VARS: an OVMF_VARS image is required")),
            },
        },
        SecurebootCommand::Keys(KeysCommand::New { out, name }) => new_keys(&out, &name),
        SecurebootCommand::Module(ModuleCommand::Verify(a)) => verify(&a),
        SecurebootCommand::Module(ModuleCommand::Sign(a)) => sign_module(&a),
        SecurebootCommand::Sign(a) => sign(&a),
        SecurebootCommand::SignModule(a) => sign_module(&a),
        SecurebootCommand::SignVariable(a) => sign_variable(&a),
        SecurebootCommand::VerifyVariable(a) => verify_variable(&a),
        SecurebootCommand::Enroll(a) => enroll(&a),
    };
    // Usage and I/O errors are exit 2 here, so that 1 always means "denied".
    Ok(result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    }))
}

fn read(path: &Path) -> Result<super::files::Contents> {
    super::files::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A --db/--dbx/--mok file: PEM certificates, an .auth file, a DER certificate or an ESL.
fn signature_lists(path: &Path) -> Result<Vec<SignatureList>> {
    let bytes = read(path)?;
    let certs = if bytes.starts_with(b"-----BEGIN") {
        openssl::x509::X509::stack_from_pem(&bytes)
            .with_context(|| format!("{}: PEM certificates", path.display()))?
            .iter()
            .map(|c| c.to_der())
            .collect::<Result<Vec<_>, _>>()?
    } else if let Some(inner) = esl::strip_authentication_2(&bytes)? {
        return esl::parse(inner).with_context(|| format!("{}: .auth payload", path.display()));
    } else if openssl::x509::X509::from_der(&bytes).is_ok() {
        vec![bytes.into_vec()]
    } else {
        return esl::parse(&bytes).with_context(|| {
            format!(
                "{}: neither a certificate nor a signature list",
                path.display()
            )
        });
    };
    certs
        .into_iter()
        .map(|der| {
            Ok(SignatureList::new(
                guid::EFI_CERT_X509_GUID,
                OWNER,
                vec![der],
            )?)
        })
        .collect()
}

fn lists(paths: &[PathBuf]) -> Result<Vec<SignatureList>> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(signature_lists(p)?);
    }
    Ok(out)
}

fn databases(a: &VerifyArgs) -> Result<Databases> {
    let mut dbs = Databases::default();
    if let Some(vars) = &a.vars {
        let bytes = read(vars)?;
        let store = VariableStore::parse(&bytes)
            .with_context(|| format!("{}: variable store", vars.display()))?;
        let [_, _, (_, db), (_, dbx)] = store.secure_boot_variables();
        dbs.db = esl::parse(db).context("db variable")?;
        dbs.dbx = esl::parse(dbx).context("dbx variable")?;
    }
    dbs.db.extend(lists(&a.db)?);
    dbs.dbx.extend(lists(&a.dbx)?);
    Ok(dbs)
}

fn shim_policy(a: &VerifyArgs) -> Result<Option<ShimPolicy>> {
    let Some(shim) = &a.shim else {
        return Ok(None);
    };
    let mut policy = ShimPolicy::from_shim_image(&read(shim)?)
        .with_context(|| format!("{}: shim's built-in policy", shim.display()))?;
    if let Some(level) = &a.sbat_level {
        policy.sbat_level = Some(
            SbatLevel::parse(&read(level)?)
                .with_context(|| format!("{}: SbatLevel", level.display()))?,
        );
    }
    policy.mok_list = lists(&a.mok)?;
    policy.mok_list_x = lists(&a.mokx)?;
    policy.via_protocol = a.shim_protocol;
    Ok(Some(policy))
}

fn verify(a: &VerifyArgs) -> Result<ExitCode> {
    let image = read(&a.image)?;
    let dbs = databases(a)?;
    let shim = shim_policy(a)?;
    if image.starts_with(b"\x7fELF") {
        return verify_module(a, &image, &dbs, shim.as_ref());
    }
    let loader = match shim {
        Some(p) => Loader::Shim(Box::new(p)),
        None => Loader::Firmware,
    };
    Ok(match secureboot::verify_image(&dbs, &image, &loader) {
        Verdict::Allowed { authority } => {
            println!("allowed: {authority}");
            ExitCode::SUCCESS
        }
        Verdict::Denied { reason } => {
            println!("denied: {reason}");
            ExitCode::from(1)
        }
    })
}

/// The kernel's module keyring as far as files can give it: db, shim's vendor certificate and
/// MokList (the platform keyring), --key and the kernel's built-in keys.
fn verify_module(
    a: &VerifyArgs,
    module: &[u8],
    dbs: &Databases,
    shim: Option<&ShimPolicy>,
) -> Result<ExitCode> {
    let mut sources: Vec<&SignatureList> = dbs.db.iter().collect();
    let extra = lists(&a.key)?;
    sources.extend(extra.iter());
    let mut keyring = Vec::new();
    if let Some(p) = shim {
        sources.extend(p.mok_list.iter());
        if let Some(c) = &p.vendor_cert {
            keyring.push(openssl::x509::X509::from_der(c)?);
        }
    }
    for l in sources {
        for (_, _, s) in l.entries() {
            if let esl::Signature::X509(der) = s {
                keyring.push(openssl::x509::X509::from_der(der)?);
            }
        }
    }
    if let Some(k) = &a.kernel_keys {
        let kernel = uncompressed_kernel(read(k)?.into_vec())
            .with_context(|| format!("{}: decompressing the kernel", k.display()))?;
        let found = module_sig::embedded_certificates(&kernel);
        if found.is_empty() {
            bail!("{}: no certificates found in the kernel image", k.display());
        }
        keyring.extend(found);
    }
    Ok(match module_sig::verify(module, &keyring) {
        ModuleVerdict::Allowed { authority } => {
            println!("allowed: module signed by {authority}");
            ExitCode::SUCCESS
        }
        ModuleVerdict::Unsigned => {
            println!("denied: unsigned module");
            ExitCode::from(1)
        }
        ModuleVerdict::NotTrusted => {
            println!("denied: signer not trusted: no keyring certificate vouches for the module signature");
            ExitCode::from(1)
        }
        ModuleVerdict::Malformed(e) => {
            println!("denied: malformed: {e}");
            ExitCode::from(1)
        }
    })
}

fn authenticode_alg(name: &str) -> Result<HashAlgorithm> {
    HashAlgorithm::from_name(name)
        .filter(|alg| HashAlgorithm::AUTHENTICODE.contains(alg))
        .ok_or_else(|| anyhow!("--alg {name}: expected sha1, sha256, sha384 or sha512"))
}

fn certificate(path: &Path) -> Result<openssl::x509::X509> {
    let bytes = read(path)?;
    openssl::x509::X509::from_pem(&bytes)
        .or_else(|_| openssl::x509::X509::from_der(&bytes))
        .with_context(|| format!("{}: not a PEM or DER certificate", path.display()))
}

fn private_key(path: &Path) -> Result<openssl::pkey::PKey<openssl::pkey::Private>> {
    openssl::pkey::PKey::private_key_from_pem(&read(path)?)
        .with_context(|| format!("{}: not a PEM private key", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<ExitCode> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn sign(a: &SignArgs) -> Result<ExitCode> {
    let chain = a
        .addcert
        .iter()
        .map(|p| certificate(p))
        .collect::<Result<Vec<_>>>()?;
    let signed = secureboot::sign::sign_image(
        &read(&a.image)?,
        authenticode_alg(&a.alg)?,
        &certificate(&a.cert)?,
        &private_key(&a.key)?,
        &chain,
    )
    .with_context(|| format!("signing {}", a.image.display()))?;
    write(&a.output, &signed)
}

fn sign_module(a: &SignModuleArgs) -> Result<ExitCode> {
    let signed = secureboot::sign::sign_module(
        &read(&a.module)?,
        &certificate(&a.cert)?,
        &private_key(&a.key)?,
    )?;
    write(&a.output, &signed)
}

fn vendor(name: &str, given: Option<&str>) -> Result<Guid> {
    match given {
        Some(text) => parse_guid(text),
        None => authvar::secure_boot_vendor(name)
            .ok_or_else(|| anyhow!("{name} is not a Secure Boot variable: give --vendor")),
    }
}

fn parse_guid(text: &str) -> Result<Guid> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let shape = text.len() == 36 && text.match_indices('-').map(|(i, _)| i).eq([8, 13, 18, 23]);
    let bytes = hex::decode(&hex).ok().filter(|b| b.len() == 16 && shape);
    let b = bytes
        .ok_or_else(|| anyhow!("{text}: not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"))?;
    let mut g = [0u8; 16];
    // The first three fields are little-endian in the encoding (UEFI appendix A).
    for (to, from) in [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]
        .into_iter()
        .enumerate()
    {
        g[from] = b[to];
    }
    Ok(Guid(g))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) or, when absent, the current time.
fn timestamp(text: Option<&str>) -> Result<EfiTime> {
    let Some(text) = text else {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        return Ok(EfiTime {
            year,
            month,
            day,
            hour: (rest / 3600) as u8,
            minute: (rest / 60 % 60) as u8,
            second: (rest % 60) as u8,
            ..EfiTime::default()
        });
    };
    let n: Vec<u16> = text
        .split(['-', ' ', ':', 'T'])
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("--timestamp {text}: expected YYYY-MM-DD HH:MM:SS"))?;
    let [year, month, day, hour, minute, second] = n[..] else {
        bail!("--timestamp {text}: expected YYYY-MM-DD HH:MM:SS");
    };
    let small = |v: u16| u8::try_from(v).map_err(|_| anyhow!("--timestamp {text}: out of range"));
    Ok(EfiTime {
        year,
        month: small(month)?,
        day: small(day)?,
        hour: small(hour)?,
        minute: small(minute)?,
        second: small(second)?,
        ..EfiTime::default()
    })
}

fn sign_variable(a: &SignVariableArgs) -> Result<ExitCode> {
    let auth = authvar::create(
        &a.name,
        vendor(&a.name, a.vendor.as_deref())?,
        authvar::SECURE_BOOT_ATTRIBUTES,
        &timestamp(a.timestamp.as_deref())?,
        &read(&a.esl)?,
        &certificate(&a.cert)?,
        &private_key(&a.key)?,
    )?;
    write(&a.output, &auth)
}

fn verify_variable(a: &VerifyVariableArgs) -> Result<ExitCode> {
    let bytes = read(&a.auth)?;
    let auth = authvar::Authentication2::parse(&bytes)
        .with_context(|| format!("{}: EFI_VARIABLE_AUTHENTICATION_2", a.auth.display()))?;
    let guid = vendor(&a.name, a.vendor.as_deref())?;
    let cert = certificate(&a.cert)?;
    if auth.verify(&a.name, guid, authvar::SECURE_BOOT_ATTRIBUTES, &cert) {
        println!(
            "valid: {} update signed for {}",
            a.name,
            secureboot::authenticode::common_name(&cert)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "invalid: the signature does not verify for {} with this certificate",
            a.name
        );
        Ok(ExitCode::from(1))
    }
}

fn enroll(a: &EnrollArgs) -> Result<ExitCode> {
    let stamp = timestamp(a.timestamp.as_deref())?;
    let mut values = Vec::new();
    for (name, files) in [
        ("PK", &a.pk),
        ("KEK", &a.kek),
        ("db", &a.db),
        ("dbx", &a.dbx),
    ] {
        if !files.is_empty() {
            values.push((name, esl::encode(&lists(files)?)));
        }
    }
    if values.is_empty() {
        bail!("nothing to enroll: give --pk, --kek, --db or --dbx");
    }
    let updates: Vec<_> = values
        .iter()
        .map(|(name, data)| varstore::NewVariable {
            name,
            vendor: authvar::secure_boot_vendor(name).unwrap_or(guid::EFI_GLOBAL_VARIABLE),
            attributes: authvar::SECURE_BOOT_ATTRIBUTES,
            timestamp: stamp,
            data,
        })
        .collect();
    let out = varstore::write_variables(&read(&a.vars)?, &updates)
        .with_context(|| format!("{}: writing the variables", a.vars.display()))?;
    write(&a.output, &out)
}

/// A vmlinux from `image`: a bzImage's payload through the matching decompressor (a child
/// process fed by a thread, so that neither pipe can fill up), anything else as it is.
fn uncompressed_kernel(image: Vec<u8>) -> Result<Vec<u8>> {
    use secureboot::module_sig::{bzimage_payload, Compression};
    use std::io::Write;
    let Some((kind, payload)) = bzimage_payload(&image)? else {
        return Ok(image);
    };
    let tool: &[&str] = match kind {
        Compression::Xz => &["xz", "-dc", "--single-stream"],
        Compression::Gzip => &["gzip", "-dc"],
        Compression::Zstd => &["zstd", "-dcq"],
        Compression::Lz4 => &["lz4", "-dc"],
        Compression::Lzma => &["lzma", "-dc"],
        Compression::Bzip2 => &["bzip2", "-dc"],
        Compression::Lzo => &["lzop", "-dc"],
        _ => bail!("unknown bzImage payload compression"),
    };
    let mut child = std::process::Command::new(tool[0])
        .args(&tool[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", tool[0]))?;
    let mut stdin = child.stdin.take().context("decompressor stdin")?;
    let payload = payload.to_vec();
    let feeder = std::thread::spawn(move || {
        // The decompressor may stop reading at the end of its stream (trailing size bytes).
        let _ = stdin.write_all(&payload);
    });
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    if out.stdout.is_empty() {
        bail!("{} produced nothing ({})", tool[0], out.status);
    }
    Ok(out.stdout)
}

fn hash(a: &HashArgs) -> Result<ExitCode> {
    let alg = authenticode_alg(&a.alg)?;
    let bytes = read(&a.image)?;
    let pe = PeImage::parse(&bytes).with_context(|| format!("{}", a.image.display()))?;
    let flavor = if a.shim_unsigned {
        DigestFlavor::Shim
    } else {
        DigestFlavor::Firmware
    };
    println!("{}", hex::encode(pe.authenticode_digest(alg, flavor)?));
    Ok(ExitCode::SUCCESS)
}

fn extract_vars(path: &Path, dir: &Path) -> Result<ExitCode> {
    let bytes = read(path)?;
    let store = VariableStore::parse(&bytes)
        .with_context(|| format!("{}: variable store", path.display()))?;
    write_esls(&store, dir)?;
    Ok(ExitCode::SUCCESS)
}

fn write_esls(store: &VariableStore<'_>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, data) in store.secure_boot_variables() {
        let path = dir.join(format!("{name}.esl"));
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// PK, KEK and db: RSA-2048 keys and self-signed certificates, written into `dir`.
fn new_keys(dir: &Path, name: &str) -> Result<ExitCode> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
    use openssl::x509::{X509Builder, X509NameBuilder};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for role in ["PK", "KEK", "db"] {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut subject = X509NameBuilder::new()?;
        subject.append_entry_by_text("CN", &format!("{name} {role}"))?;
        let subject = subject.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let serial = serial.to_asn1_integer()?;
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(&subject)?;
        b.set_pubkey(&key)?;
        let (from, to) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
        b.set_not_before(&from)?;
        b.set_not_after(&to)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
        b.append_extension(ski)?;
        b.sign(&key, MessageDigest::sha256())?;
        let cert = b.build();
        let key_path = dir.join(format!("{role}.key"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .with_context(|| format!("writing {}", key_path.display()))?;
        f.write_all(&key.private_key_to_pem_pkcs8()?)?;
        let cert_path = dir.join(format!("{role}.crt"));
        std::fs::write(&cert_path, cert.to_pem()?)
            .with_context(|| format!("writing {}", cert_path.display()))?;
        println!("{} {}", key_path.display(), cert_path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn list_vars(path: &Path, extract: Option<&Path>) -> Result<ExitCode> {
    let bytes = read(path)?;
    let store = VariableStore::parse(&bytes)
        .with_context(|| format!("{}: variable store", path.display()))?;
    for v in store.variables.iter() {
        println!(
            "{} {} attributes={:#x} size={} {}",
            v.vendor,
            if v.is_live() { "live" } else { "deleted" },
            v.attributes,
            v.data.len(),
            v.name,
        );
    }
    if let Some(dir) = extract {
        write_esls(&store, dir)?;
    }
    Ok(ExitCode::SUCCESS)
}
