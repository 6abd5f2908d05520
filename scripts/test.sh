#!/usr/bin/env bash
# The project's test command. It installs what the tests need (tpm2-tools as the real client,
# swtpm as the peer, tpm2-tss for the benchmark), then runs formatting and lint checks, every
# test of the workspace, and the short fuzz run when scripts/fuzz.sh exists.
# Usage: bash scripts/test.sh     (CI runs it through .ci/run, as root, on a fresh Debian 12.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
source scripts/lib/debian.sh
step() { printf '\n==> %s  [%ds]\n' "$*" "$((SECONDS - started))"; }

# --- Tools the tests drive ---------------------------------------------------------------
step "Debian packages the tests need"
missing=()
# qemu-system-x86, ovmf, cpio: the Secure Boot lab (lab/, tests/qemu_boot.rs).
# python3-jwt (PyJWT over python3-cryptography): the independent JWT verifier for health tokens.
# sbsigntool, pesign, efitools, binutils, xz-utils: the peers of tests/secureboot.rs
# (sbverify/sbsign/sbattach, pesign -h, sig-list-to-certs/hash-to-efi-sig-list, objcopy, and xz
# for the kernel's built-in keys).
# gnu-efi: the UEFI application tests/byo_keys_qemu.rs signs with its own keys and boots.
# postgresql: the store's second backend (crates/store/tests run on SQLite and PostgreSQL).
for pkg in tpm2-tools swtpm swtpm-tools libtss2-dev openssl libssl-dev pkg-config qemu-system-x86 ovmf cpio \
    python3-jwt python3-cryptography sbsigntool pesign efitools binutils xz-utils python3-venv postgresql curl gnu-efi; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# kubectl: the Kubernetes node API is checked with the real client (Debian's kubernetes-client,
# unless a kubectl is already installed from elsewhere).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt_install "${missing[@]}"
else
    echo "all present"
fi
# Python tools not packaged in Debian 12, from PyPI into one venv (/opt/trustlaunch-tools):
# virt-firmware's virt-fw-vars reads and writes OVMF variable stores (the independent peer of
# tests/secureboot.rs for crates/secureboot's varstore); openapi-spec-validator checks the
# server's OpenAPI document (tests/agent_push.rs); schemathesis sends every operation in it
# generated requests (tests/api_schemathesis.rs).
for tool in virt-fw-vars:virt-firmware openapi-spec-validator:openapi-spec-validator schemathesis:schemathesis; do
    cmd=${tool%%:*} pkg=${tool#*:}
    command -v "$cmd" >/dev/null 2>&1 && continue
    echo "installing $pkg (pip, in /opt/trustlaunch-tools)"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    [[ -x /opt/trustlaunch-tools/bin/pip ]] || "${sudo[@]}" python3 -m venv --system-site-packages /opt/trustlaunch-tools
    "${sudo[@]}" /opt/trustlaunch-tools/bin/pip install -q "$pkg"
    "${sudo[@]}" ln -sf "/opt/trustlaunch-tools/bin/$cmd" "/usr/local/bin/$cmd"
done

# --- PostgreSQL for the store tests -------------------------------------------------------
# The store's tests run every repository on SQLite and on PostgreSQL; without a server they
# fail (never skip). Start Debian's cluster, make a role that may create the per-test
# databases, and hand its URL to the tests.
step "PostgreSQL for the store tests"
as_postgres() { if [[ $(id -u) -eq 0 ]]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
pg_version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
    pg_lsclusters -h | grep -q . || as_postgres "pg_createcluster $pg_version main" >/dev/null
    if [[ $(id -u) -eq 0 ]]; then pg_ctlcluster "$pg_version" main start; else sudo pg_ctlcluster "$pg_version" main start; fi
fi
as_postgres "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='trustlaunch'\" | grep -q 1 \
    || psql -qc \"CREATE ROLE trustlaunch LOGIN CREATEDB PASSWORD 'trustlaunch'\""
as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='trustlaunch'\" | grep -q 1 \
    || createdb -O trustlaunch trustlaunch"
export TRUSTLAUNCH_TEST_POSTGRES=${TRUSTLAUNCH_TEST_POSTGRES:-postgres://trustlaunch:trustlaunch@127.0.0.1:5432/trustlaunch}
echo "TRUSTLAUNCH_TEST_POSTGRES=${TRUSTLAUNCH_TEST_POSTGRES//:trustlaunch@/:***@}"

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
