#!/usr/bin/env bash
# Regenerates the quote fixtures in this directory from real swtpm (libtpms) and from our
# vTPM (`trustlaunch vtpm socket`), with tpm2-tools as the client. See README.md.
#
# Usage: bash crates/attest/testdata/make-fixtures.sh path/to/trustlaunch
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
trustlaunch="$(realpath "${1:?usage: make-fixtures.sh path/to/trustlaunch}")"
work="$(mktemp -d)"
server=""
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

nonce=5ca1ab1e00112233445566778899aabbccddeeff
port=23730

for backend in swtpm ours; do
    for key in ecc rsa; do
        port=$((port + 2))
        state="$work/$backend-$key"
        mkdir -p "$state/state"
        if [[ $backend == swtpm ]]; then
            cmd=(swtpm)
        else
            cmd=("$trustlaunch" vtpm)
        fi
        "${cmd[@]}" socket --tpm2 --server type=tcp,port=$port --ctrl type=tcp,port=$((port + 1)) \
            --tpmstate dir="$state/state" --flags not-need-init,startup-clear >"$state/server.log" 2>&1 &
        server=$!
        for _ in $(seq 100); do
            (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
            sleep 0.1
        done
        export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"
        out="$here/$backend-$key"
        mkdir -p "$out"
        (
            cd "$state"
            if [[ $key == ecc ]]; then
                ak=(-G ecc -s ecdsa -g sha256)
            else
                ak=(-G rsa -s rsassa -g sha256)
            fi
            tpm2_createek -G "$key" -c ek.ctx >/dev/null
            tpm2_flushcontext -t
            tpm2_createak -C ek.ctx "${ak[@]}" -c ak.ctx -u "$out/ak.pub" -n "$out/ak.name" >/dev/null
            tpm2_flushcontext -t
            tpm2_readpublic -c ak.ctx -f pem -o "$out/ak.pem" >/dev/null
            tpm2_flushcontext -t
            tpm2_pcrextend "0:sha256=$(printf '%064x' 7),sha1=$(printf '%040x' 7)"
            tpm2_pcrextend "7:sha256=$(printf '%064x' 0x1007)"
            tpm2_quote -c ak.ctx -l sha256:0,1,7+sha1:0 -q "$nonce" -g sha256 \
                -m "$out/quote.msg" -s "$out/quote.sig" -o "$out/quote.pcrs" >/dev/null
            tpm2_flushcontext -t
            # The same values in the text format, from tpm2_pcrread (not from the pcrs file).
            tpm2_pcrread sha256:0,1,7+sha1:0 |
                awk '/^ *sha[0-9]+:$/ { bank = $1; sub(":", "", bank) }
                     /^ *[0-9]+ *: *0x/ { v = tolower($3); sub("^0x", "", v); print bank, $1, v }' \
                    >"$out/pcrs.txt"
            echo "$nonce" >"$out/nonce.hex"
            tpm2_checkquote -u "$out/ak.pub" -m "$out/quote.msg" -s "$out/quote.sig" \
                -f "$out/quote.pcrs" -g sha256 -q "$nonce" >/dev/null
        )
        kill "$server"
        wait "$server" 2>/dev/null || true
        server=""
        echo "made $backend-$key"
    done
done
