//! Asymmetric cryptography for TPM objects (being written).
