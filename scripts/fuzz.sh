#!/usr/bin/env bash
# Fuzz the TPM 2.0 engine (crates/tpm), the event log parser (crates/eventlog) and the Secure
# Boot parsers (crates/secureboot) with cargo-fuzz: libFuzzer, optionally with ASan.
#
# Targets (fuzz/fuzz_targets, one per input parser):
#   tpm_execute  command sequences against a started TPM (TPM2 command parsing and execution)
#   tpm_state    permanent-state blobs for Tpm::restore (the state file parser)
#   eventlog_parse           TCG event logs: parse, write back, replay, decode, Secure Boot state
#   secureboot_pe            PE/COFF images: digests, certificate table, .sbat, verify_image
#   secureboot_authenticode  Authenticode PKCS#7 SignedData, module signature trailers
#   secureboot_esl           EFI signature lists (re-encoded and compared), .auth, SbatLevel
#   secureboot_varstore      OVMF variable stores
# Seeds: fuzz/corpus/<target> (real tpm2-tools traffic; see fuzz/corpus/README.md); for
# eventlog_parse, the real firmware logs of crates/eventlog/testdata.
#
# Stable Rust only: cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address and the
# sanitizer-coverage options); RUSTC_BOOTSTRAP=1 makes stable rustc accept them. The
# invocation, from the repository root, is
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none tpm_execute CORPUS_DIR -- -dict=fuzz/tpm.dict
# Both sanitizers work on stable this way: `-s none` (this script's default) and cargo-fuzz's
# default `-s address`. The engine is #![forbid(unsafe_code)], so AddressSanitizer guards only
# the dependencies' unsafe code, at about a tenth of the speed; panics, overflow checks and
# debug assertions (cargo-fuzz builds with them) are caught either way.
# libfuzzer-sys compiles libFuzzer's C++ with the system C++ compiler (g++). The first build
# (crypto dependencies in release mode) takes about 3 minutes on 2 cores.
#
# Usage:
#   bash scripts/fuzz.sh short                       each target 25 s (CI; under 3 minutes
#                                                    once built)
#   bash scripts/fuzz.sh long SECONDS [TARGET...]    each (or each named) target SECONDS
#   bash scripts/fuzz.sh repro TARGET FILE...        run inputs once (a crash artifact)
# Runs start from a temporary copy of the seed corpus: the checked-in corpus never grows.
# Exit status: non-zero if a target crashed (the artifact path is printed), timed out, ran out
# of memory or did not build. Logs go to $FUZZ_LOG_DIR (default: a temporary directory).
# FUZZ_SANITIZER=none|address (default none) picks the sanitizer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/debian.sh

TARGETS=(tpm_execute tpm_state eventlog_parse secureboot_pe secureboot_authenticode secureboot_esl secureboot_varstore)
SANITIZER=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

usage() {
    sed -n '/^# Usage:/,/^# Runs start/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

ensure_tools() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "==> installing cargo-fuzz"
        cargo install cargo-fuzz --locked || cargo install cargo-fuzz
    fi
    if ! command -v c++ >/dev/null 2>&1; then
        echo "==> installing g++ (libfuzzer-sys compiles libFuzzer)"
        apt_install g++
    fi
}

build() {
    echo "==> cargo fuzz build -s $SANITIZER ($*)"
    local t
    for t in "$@"; do
        cargo fuzz build -s "$SANITIZER" "$t"
    done
}

max_len() {
    case $1 in
    tpm_execute) echo 8192 ;; # room for two maximum-size (4096-byte) commands and more
    eventlog_parse) echo 80000 ;; # the largest real log of the seeds is 72,817 bytes
    secureboot_*) echo 16384 ;; # the seeds (a signed PE, a store holding OVMF's db) are 1.5-4 KiB
    *) echo 4096 ;;
    esac
}

# dict TARGET: the libFuzzer dictionary arguments for TARGET (TPM command codes and tags for
# the TPM targets, event types and markers for the event log; none helps the PE parsers).
dict() {
    case $1 in
    eventlog_parse) echo -dict=fuzz/eventlog.dict ;;
    tpm_*) echo -dict=fuzz/tpm.dict ;;
    esac
}

# seed TARGET DIR: copy the target's seeds into DIR.
seed() {
    case $1 in
    eventlog_parse)
        local f
        for f in crates/eventlog/testdata/*/*.bin; do
            cp "$f" "$2/$(basename "$(dirname "$f")")-$(basename "$f")"
        done
        ;;
    *) cp fuzz/corpus/"$1"/* "$2"/ ;;
    esac
}

# run TARGET SECONDS: fuzz from a copy of the seeds; 0 if nothing was found.
run() {
    local target=$1 seconds=$2
    local corpus="$work/corpus-$target" log="$logs/$target.log"
    local artifacts="fuzz/artifacts/$target/"
    local dict
    read -ra dict <<<"$(dict "$target")"
    mkdir -p "$corpus" "$artifacts"
    seed "$target" "$corpus"
    echo "==> $target: $seconds s from $(ls "$corpus" | wc -l) seeds (log: $log)"
    local status=0
    cargo fuzz run -s "$SANITIZER" "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
        -max_len="$(max_len "$target")" "${dict[@]}" \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || status=$?
    # The last status line (#N DONE cov: ft: corp: exec/s: rss:) and the final stats.
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
    grep -E '^(Done [0-9]+ runs|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$log" || true
    if ((status != 0)); then
        echo "!!! $target FAILED (exit $status)"
        grep -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY:' "$log" | head -n 5 || true
        local artifact
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | cut -d' ' -f5)
        if [[ -n $artifact ]]; then
            echo "!!! artifact: $artifact"
            echo "!!! reproduce: bash scripts/fuzz.sh repro $target $artifact"
        fi
        tail -n 40 "$log"
        return 1
    fi
}

mode=${1:-}
case $mode in
short)
    seconds=25
    targets=("${TARGETS[@]}")
    ;;
long)
    seconds=${2:-}
    [[ $seconds =~ ^[0-9]+$ ]] || usage
    targets=("${@:3}")
    ((${#targets[@]})) || targets=("${TARGETS[@]}")
    ;;
repro)
    (($# >= 3)) || usage
    ensure_tools
    build "$2"
    cargo fuzz run -s "$SANITIZER" "$2" "${@:3}" -- -runs=1
    exit
    ;;
*) usage ;;
esac

for t in "${targets[@]}"; do
    [[ " ${TARGETS[*]} " == *" $t "* ]] || { echo "unknown target: $t" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
logs=${FUZZ_LOG_DIR:-$work/logs}
mkdir -p "$logs"

ensure_tools
build "${targets[@]}"
failed=()
for t in "${targets[@]}"; do
    run "$t" "$seconds" || failed+=("$t")
done
if ((${#failed[@]})); then
    echo "fuzzing found problems in: ${failed[*]}"
    exit 1
fi
echo "==> no crashes"
