//! Policy commands (Part 3, 23): each extends a policy session's digest and records the
//! conditions checked when the session authorizes a command.
//! (Handlers are being written; until then each answers TPM_RC_COMMAND_CODE.)

use super::Ctx;
use crate::engine::Tpm;
use crate::rc::Rc;

macro_rules! not_yet {
    ($($name:ident),*) => {
        $(pub(crate) fn $name(_tpm: &mut Tpm, _c: &mut Ctx<'_>) -> Result<(), Rc> {
            Err(Rc::COMMAND_CODE)
        })*
    };
}

not_yet!(
    policy_nv,
    policy_secret,
    policy_signed,
    policy_authorize,
    policy_auth_value,
    policy_command_code,
    policy_cp_hash,
    policy_name_hash,
    policy_or,
    policy_pcr,
    policy_restart,
    policy_get_digest,
    policy_password
);
