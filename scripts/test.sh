#!/usr/bin/env bash
# The project's test command. It installs what the tests need (tpm2-tools as the real client,
# swtpm as the peer, tpm2-tss for the benchmark), then runs formatting and lint checks, every
# test of the workspace, and the short fuzz run when scripts/fuzz.sh exists.
# Usage: bash scripts/test.sh     (CI runs it through .ci/run, as root, on a fresh Debian 12.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
step() { printf '\n==> %s  [%ds]\n' "$*" "$((SECONDS - started))"; }

# --- Tools the tests drive ---------------------------------------------------------------
step "Debian packages the tests need"
missing=()
# qemu-system-x86, ovmf, cpio: the Secure Boot lab (lab/, tests/qemu_boot.rs).
# sbsigntool, pesign, efitools, binutils, xz-utils: the peers of tests/secureboot.rs
# (sbverify/sbsign/sbattach, pesign -h, sig-list-to-certs/hash-to-efi-sig-list, objcopy, and xz
# for the kernel's built-in keys).
for pkg in tpm2-tools swtpm swtpm-tools libtss2-dev openssl libssl-dev pkg-config qemu-system-x86 ovmf cpio \
    sbsigntool pesign efitools binutils xz-utils python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "installing: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "all present"
fi
# virt-firmware (PyPI; not packaged in Debian 12): virt-fw-vars reads and writes OVMF variable
# stores, the independent peer of tests/secureboot.rs for crates/secureboot's varstore.
if ! command -v virt-fw-vars >/dev/null 2>&1; then
    echo "installing virt-firmware (pip, in /opt/trustlaunch-tools)"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" python3 -m venv --system-site-packages /opt/trustlaunch-tools
    "${sudo[@]}" /opt/trustlaunch-tools/bin/pip install -q virt-firmware
    "${sudo[@]}" ln -sf /opt/trustlaunch-tools/bin/virt-fw-vars /usr/local/bin/virt-fw-vars
fi

# --- Static checks ------------------------------------------------------------------------
step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# --- Tests --------------------------------------------------------------------------------
# The tpm2-tools acceptance tests start the debug `trustlaunch` binary that the test build
# makes (CARGO_BIN_EXE_trustlaunch) and real swtpm as the peer, on free loopback ports.
if cargo nextest --version >/dev/null 2>&1; then
    step "cargo test --workspace --doc"
    cargo test --workspace --doc
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast
else
    step "cargo test --workspace"
    cargo test --workspace --no-fail-fast
fi

# --- Fuzzing smoke run --------------------------------------------------------------------
if [[ -f scripts/fuzz.sh ]]; then
    step "bash scripts/fuzz.sh short"
    bash scripts/fuzz.sh short
fi

step "done"
