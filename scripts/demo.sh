#!/usr/bin/env bash
# The project's main job, until the quickstart exists: build trustlaunch, start a vTPM on the
# swtpm protocol, and drive it with the real tpm2-tools as a guest's TPM stack would (startup,
# capabilities, a measured-boot style PCR extension, NV storage, the EK certificate against
# the host's vTPM CA, a quote checked by tpm2_checkquote, a restart that keeps state), then
# benchmark it side by side with swtpm. Installs what it needs from Debian if missing.
# Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib/debian.sh
ensure_packages tpm2-tools swtpm swtpm-tools libtss2-dev libssl-dev pkg-config openssl xxd

cargo build --release --quiet -p trustlaunch
bin=$PWD/target/release/trustlaunch
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
server_pid=
cleanup() { [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start() {
    "$bin" vtpm socket --tpm2 --server type=tcp,port=$port --ctrl type=tcp,port=$((port + 1)) \
        --tpmstate dir="$work/state" --flags not-need-init --pid file="$work/pid" &
    server_pid=$!
    for _ in $(seq 100); do [[ -s $work/pid ]] && break; sleep 0.05; done
}
stop() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; rm -f "$work/pid"; server_pid=; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
mkdir -p "$work/state"

say "A node's vTPM: trustlaunch vtpm socket on 127.0.0.1:$port (state in $work/state)"
start
tpm2_startup -c
tpm2_getcap properties-fixed | grep -A2 -E 'TPM2_PT_FAMILY_INDICATOR|TPM2_PT_MANUFACTURER' | grep -E 'PT_|value'
say "PCR banks (SHA-1, SHA-256, SHA-384, as cloud vTPMs expose)"
tpm2_getcap pcrs
say "Measure a 'kernel' into PCR 9, as a boot loader would, and check it independently"
printf 'vmlinuz-6.1.0-amd64' > "$work/kernel"
tpm2_pcrevent 9 "$work/kernel" | grep sha256
expected=$(python3 -c "import hashlib,sys; d=hashlib.sha256(open(sys.argv[1],'rb').read()).digest(); print(hashlib.sha256(bytes(32)+d).hexdigest())" "$work/kernel")
echo "expected sha256 PCR 9: $expected"
tpm2_pcrread sha256:9
say "NV storage: define, write, read back"
tpm2_nvdefine 0x1500016 -C o -s 32 -a "ownerread|ownerwrite" >/dev/null
echo -n "node-7 boot counter state......" > "$work/nvdata"
tpm2_nvwrite 0x1500016 -C o -i "$work/nvdata"
tpm2_nvread 0x1500016 -C o -s 31 | xxd | head -2
say "Endorsement: the EK certificate in NV verifies against the host's vTPM CA"
"$bin" vtpm ca export > "$work/ca.pem"
tpm2_nvread -C o 0x01c0000a -o "$work/ek-ecc.der" >/dev/null
openssl x509 -inform DER -in "$work/ek-ecc.der" -noout -issuer -ext subjectAltName
openssl x509 -inform DER -in "$work/ek-ecc.der" -out "$work/ek-ecc.pem"
openssl verify -CAfile "$work/ca.pem" "$work/ek-ecc.pem"
say "Remote attestation's first step: an AK under the EK quotes PCR 9; tpm2_checkquote verifies"
tpm2_createek -G ecc -c "$work/ek.ctx" -u "$work/ek.pub" >/dev/null
tpm2_createak -C "$work/ek.ctx" -G ecc -g sha256 -s ecdsa -c "$work/ak.ctx" -u "$work/ak.pub" -n "$work/ak.name" >/dev/null
tpm2_flushcontext -t
nonce=$(head -c 16 /dev/urandom | xxd -p)
tpm2_quote -c "$work/ak.ctx" -l sha256:9 -q "$nonce" -m "$work/q.msg" -s "$work/q.sig" -o "$work/q.pcrs" -g sha256 >/dev/null
tpm2_flushcontext -t
tpm2_checkquote -u "$work/ak.pub" -m "$work/q.msg" -s "$work/q.sig" -f "$work/q.pcrs" -g sha256 -q "$nonce" | grep -A2 "sha256"
tpm2_flushcontext -s 2>/dev/null || true
say "Orderly shutdown, process restart, resume: PCR 9 and NV survive"
tpm2_shutdown
stop
start
tpm2_startup
tpm2_pcrread sha256:9
tpm2_nvread 0x1500016 -C o -s 31 | head -c 31; echo
stop

say "Benchmarks against swtpm through tpm2-tss's swtpm TCTI"
"$bin" bench vtpm
"$bin" bench keys
