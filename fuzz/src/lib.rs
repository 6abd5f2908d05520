//! Shared pieces of the fuzz targets: the input format of `tpm_execute`, the response
//! invariants every target checks, and a state comparison that tolerates the running clock.

use tpm::{Tpm, MAX_RESPONSE_SIZE};

/// TPM2_Startup(TPM_SU_CLEAR).
pub const STARTUP_CLEAR: [u8; 12] = [
    0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x44, 0x00, 0x00,
];
/// TPM2_Startup(TPM_SU_STATE).
pub const STARTUP_STATE: [u8; 12] = [
    0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x44, 0x00, 0x01,
];
/// TPM2_Shutdown(TPM_SU_STATE).
pub const SHUTDOWN_STATE: [u8; 12] = [
    0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x45, 0x00, 0x01,
];

/// Fixed manufacturing entropy: runs are reproducible from the input alone.
pub const ENTROPY: [u8; 32] = *b"trustlaunch tpm fuzz entropy 32B";

/// Control-byte bits of one `tpm_execute` record.
pub mod ctl {
    /// The locality the command is sent at (5-7 are invalid and must be refused).
    pub const LOCALITY: u8 = 0x07;
    /// After the command: `permanent_state()` must restore, and re-encode to the same blob.
    pub const CHECK_RESTORE: u8 = 0x08;
    /// After the command: power cycle — continue with the TPM restored from
    /// `permanent_state()` (it needs a TPM2_Startup again).
    pub const POWER_CYCLE: u8 = 0x10;
    /// Before the command: _TPM_Init (volatile state lost, TPM2_Startup needed).
    pub const INIT: u8 = 0x20;
}

/// One command of a `tpm_execute` input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub control: u8,
    pub command: &'a [u8],
}

/// Split a `tpm_execute` input into records. The format is a sequence of
///
/// ```text
/// control: u8   (see `ctl`)
/// length:  u16, big-endian
/// command: `length` bytes (fewer if the input ends first)
/// ```
///
/// so a command is passed on exactly as it is, malformed header included.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let (&control, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (rest.len(), rest),
        };
        let (command, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some(Record { control, command })
    })
}

/// Encode records in the format `records` reads (for the seed corpus).
pub fn encode_records<'a>(records: impl IntoIterator<Item = Record<'a>>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let len = u16::try_from(r.command.len()).unwrap_or(u16::MAX);
        out.push(r.control);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(r.command.get(..usize::from(len)).unwrap_or(r.command));
    }
    out
}

/// The response code of a response (call after `check_response`).
pub fn response_code(resp: &[u8]) -> u32 {
    match resp {
        [_, _, _, _, _, _, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => u32::MAX,
    }
}

/// Invariants of every TPM response (Part 1, 18; Part 3, 5): a 10-byte header at least, the
/// size field equal to the length, no more than MAX_RESPONSE_SIZE; an error response is the
/// header alone with TPM_ST_NO_SESSIONS (TPM_ST_RSP_COMMAND for a TPM 1.2-tagged command);
/// a successful response carries the command's tag.
pub fn check_response(command: &[u8], resp: &[u8]) {
    assert!(
        resp.len() >= 10,
        "response shorter than a header: {resp:02x?}"
    );
    assert!(
        resp.len() <= MAX_RESPONSE_SIZE,
        "response of {} bytes exceeds MAX_RESPONSE_SIZE ({MAX_RESPONSE_SIZE})",
        resp.len()
    );
    let tag = u16::from_be_bytes([resp[0], resp[1]]);
    let size = u32::from_be_bytes([resp[2], resp[3], resp[4], resp[5]]);
    assert_eq!(
        size as usize,
        resp.len(),
        "response size field differs from its length"
    );
    let rc = response_code(resp);
    if rc != 0 {
        assert_eq!(resp.len(), 10, "error response {rc:#x} carries a body");
        assert!(
            tag == 0x8001 || tag == 0x00c4,
            "error response {rc:#x} has tag {tag:#06x}"
        );
    } else {
        assert!(command.len() >= 2, "success for a command without a tag");
        let cmd_tag = u16::from_be_bytes([command[0], command[1]]);
        assert_eq!(
            tag, cmd_tag,
            "successful response tag differs from the command's"
        );
    }
}

/// TPM_RS_PW, the password session handle.
pub const RS_PW: u32 = 0x4000_0009;

/// Build a command: `auth` is `Some(password)` for TPM_ST_SESSIONS with one password session.
pub fn command(code: u32, handles: &[u32], auth: Option<&[u8]>, params: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(64 + params.len());
    let tag: u16 = if auth.is_some() { 0x8002 } else { 0x8001 };
    c.extend_from_slice(&tag.to_be_bytes());
    c.extend_from_slice(&[0; 4]);
    c.extend_from_slice(&code.to_be_bytes());
    for h in handles {
        c.extend_from_slice(&h.to_be_bytes());
    }
    if let Some(pw) = auth {
        let pw = &pw[..pw.len().min(64)];
        c.extend_from_slice(&(9 + pw.len() as u32).to_be_bytes());
        c.extend_from_slice(&RS_PW.to_be_bytes());
        c.extend_from_slice(&[0, 0, 1]);
        c.extend_from_slice(&(pw.len() as u16).to_be_bytes());
        c.extend_from_slice(pw);
    }
    c.extend_from_slice(params);
    let size = (c.len() as u32).to_be_bytes();
    c[2..6].copy_from_slice(&size);
    c
}

/// Execute one command and check the response.
pub fn execute_checked(tpm: &mut Tpm, locality: u8, command: &[u8]) -> Vec<u8> {
    let resp = tpm.execute(locality, command);
    check_response(command, &resp);
    resp
}

/// Most milliseconds the clock may advance between two encodings compared here.
const CLOCK_SLACK_MS: u64 = 60_000;

/// Whether two permanent-state blobs are equal but for the clock: `permanent_state()` writes
/// the current clock (milliseconds since manufacture, running in real time), so blobs taken at
/// different moments may differ in that one 8-byte big-endian field, by a small increase.
pub fn same_state(earlier: &[u8], later: &[u8]) -> bool {
    if earlier == later {
        return true;
    }
    if earlier.len() != later.len() {
        return false;
    }
    let diff = |i: &usize| earlier[*i] != later[*i];
    let (Some(first), Some(last)) = (
        (0..earlier.len()).find(diff),
        (0..earlier.len()).rfind(diff),
    ) else {
        return true;
    };
    if last - first >= 8 {
        return false;
    }
    // Some 8-byte window covering [first, last] must hold a u64 that grew a little.
    (last.saturating_sub(7)..=first)
        .filter(|s| s + 8 <= earlier.len())
        .any(|s| {
            let a = u64::from_be_bytes(earlier[s..s + 8].try_into().unwrap_or_default());
            let b = u64::from_be_bytes(later[s..s + 8].try_into().unwrap_or_default());
            b > a && b - a <= CLOCK_SLACK_MS
        })
}

/// `permanent_state()` must restore, and the restored TPM must encode the same state.
pub fn check_restore(tpm: &Tpm) -> Tpm {
    let blob = tpm.permanent_state();
    let restored = match Tpm::restore(&blob, &ENTROPY) {
        Ok(t) => t,
        Err(e) => panic!("permanent_state() does not restore: {e}\nblob: {blob:02x?}"),
    };
    let again = restored.permanent_state();
    assert!(
        same_state(&blob, &again),
        "restored state encodes differently\nbefore: {blob:02x?}\nafter:  {again:02x?}"
    );
    restored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let rs = [
            Record {
                control: 1,
                command: &STARTUP_CLEAR[..],
            },
            Record {
                control: 0x18,
                command: &[],
            },
            Record {
                control: 2,
                command: &SHUTDOWN_STATE[..],
            },
        ];
        let enc = encode_records(rs);
        assert_eq!(records(&enc).collect::<Vec<_>>(), rs);
        // A truncated tail is still a record.
        let v: Vec<_> = records(&enc[..enc.len() - 3]).collect();
        assert_eq!(v[2].command, &SHUTDOWN_STATE[..9]);
        assert_eq!(
            records(&[7]).collect::<Vec<_>>(),
            [Record {
                control: 7,
                command: &[]
            }]
        );
    }

    #[test]
    fn clock_tolerance() {
        let a = [1u8, 2, 0, 0, 0, 0, 0, 0, 0x00, 0xff, 9];
        let mut b = a;
        b[8] = 1;
        b[9] = 0;
        assert!(same_state(&a, &b));
        assert!(!same_state(&b, &a));
        let mut c = a;
        c[0] = 0;
        c[10] = 0;
        assert!(!same_state(&a, &c), "differences 10 bytes apart");
        let mut d = a;
        d[2] = 1;
        assert!(!same_state(&a, &d), "a jump of 2^40 ms is no clock tick");
        assert!(!same_state(&a, &a[..10]));
    }
}
