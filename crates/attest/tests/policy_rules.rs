//! The Secure Boot key rules of a reference policy, on the claims of a real boot (the OVMF +
//! shim + grub + Debian kernel log in crates/eventlog/testdata): PK, KEK and db must be
//! subsets of what the policy allows, dbx a superset of what it requires.

use attest::appraisal::{boot_claims, Failure};
use attest::policy::ReferencePolicy;
use attest::PcrValues;

fn claims() -> attest::appraisal::BootClaims {
    let log = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../eventlog/testdata/ovmf-debian12/secureboot-shim-grub-linux.bin"
    ))
    .unwrap_or_default();
    let log = eventlog::EventLog::parse(&log).unwrap_or_else(|e| panic!("{e}"));
    boot_claims(&log).unwrap_or_else(|f| panic!("{}", f.reason))
}

fn failures(p: &ReferencePolicy) -> Vec<Failure> {
    let mut f = Vec::new();
    p.evaluate(&PcrValues::new(), Some(&claims()), &mut f);
    f
}

#[test]
fn the_real_boot_has_one_pk_kek_entries_db_entries_and_a_dbx() {
    let c = claims();
    assert_eq!(c.pk.len(), 1, "{c:?}");
    assert!(
        !c.kek.is_empty() && !c.db.is_empty() && !c.dbx.is_empty(),
        "{c:?}"
    );
    assert!(c
        .pk
        .iter()
        .chain(&c.kek)
        .chain(&c.db)
        .all(|h| h.len() == 64));
}

#[test]
fn key_sets_are_checked_as_subsets_and_dbx_as_a_superset() {
    let c = claims();
    let all = ReferencePolicy {
        version: 1,
        allowed_pk: Some(c.pk.clone()),
        allowed_kek: Some(c.kek.clone()),
        allowed_db: Some(c.db.clone()),
        required_dbx: c.dbx.clone(),
        ..Default::default()
    };
    assert_eq!(failures(&all), vec![]);

    // A KEK the policy does not list (here: the policy allows only the first of them).
    let mut p = all.clone();
    p.allowed_kek = Some(c.kek[..1].to_vec());
    let f = failures(&p);
    assert_eq!(f.len(), c.kek.len() - 1, "{f:?}");
    assert!(f
        .iter()
        .all(|f| f.reason == "KEK holds an entry the policy does not allow" && f.pcr == Some(7)));

    // Another platform owner.
    let mut p = all.clone();
    p.allowed_pk = Some(vec!["ab".repeat(32)]);
    let f = failures(&p);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, "PK holds an entry the policy does not allow");
    assert_eq!(f[0].observed.as_deref(), Some(c.pk[0].as_str()));

    // A revocation the nodes lack.
    let mut p = all.clone();
    p.required_dbx.push("cd".repeat(32));
    let f = failures(&p);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].reason, "dbx lacks a revocation the policy requires");
    assert_eq!(f[0].expected.as_deref(), Some("cd".repeat(32).as_str()));

    // db with an extra entry beyond an empty allowance.
    let mut p = all;
    p.allowed_db = Some(vec![]);
    assert_eq!(failures(&p).len(), c.db.len());
}
