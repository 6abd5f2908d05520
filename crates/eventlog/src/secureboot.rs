//! Secure Boot state (placeholder).
pub fn validate() {}
pub struct Authority;
pub struct AuthorityKind;
pub struct BootApplication;
pub struct BootComponents;
pub struct BootString;
pub struct FirmwareMeasurement;
pub struct SecureBootState;
pub struct VariableMeasurement;
