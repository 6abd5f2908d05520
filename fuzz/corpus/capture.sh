#!/usr/bin/env bash
# Regenerate the tpm_execute seed corpus from real tpm2-tools traffic (see README.md).
#
# Each scenario runs tpm2-tools against a fresh TPM through tpm2-tss's pcap TCTI, then
# pcap2corpus.py turns the commands the tools sent into one seed file named after the
# scenario. Every scenario runs twice:
#   swtpm-NAME  against swtpm (the reference; its HMAC sessions fail on replay, their nonces
#               came from swtpm, but the commands are what tools send a full TPM);
#   ours-NAME   against this engine (fuzz/examples/serve.rs, manufactured from the targets'
#               fixed entropy and started as tpm_execute starts it, so a replay draws the same
#               TPM nonces and the sessions verify: the seeds reach the success paths).
# Needs: swtpm, swtpm_ioctl, tpm2-tools, libtss2-tcti-pcap0, python3, cargo.
# Then the tpm_state seeds: permanent-state blobs of a few of the ours-* replays
# (fuzz/examples/replay.rs --states), into fuzz/corpus/tpm_state.
# Usage: bash fuzz/corpus/capture.sh [OUT_DIR]   (default: fuzz/corpus/tpm_execute)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/tpm_execute}"
mkdir -p "$out"
work="$(mktemp -d)"
new="$work/new" # the fresh seeds; they replace the old ones only when every scenario ran
mkdir -p "$new"
server_pid=""
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    stop_server
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --release --examples --manifest-path "$here/../Cargo.toml"
serve="$here/../target/release/examples/serve"
replay="$here/../target/release/examples/replay"

# Two free loopback ports (nothing answers on them).
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
while :; do
    port=$((20000 + RANDOM % 20000))
    ctrl=$((port + 1))
    in_use $port || in_use $ctrl || break
done

# Start a fresh TPM ($server: swtpm or ours), started with Startup(CLEAR) unless "bare".
start_server() {
    stop_server
    local bare=${1:-}
    if [[ $server == swtpm ]]; then
        rm -rf "$work/state" && mkdir "$work/state"
        local flags=not-need-init,startup-clear
        [[ $bare == bare ]] && flags=not-need-init
        swtpm socket --tpm2 --server type=tcp,port=$port --ctrl type=tcp,port=$ctrl \
            --tpmstate dir="$work/state" --flags "$flags" &
    else
        "$serve" $port $ctrl $bare &
    fi
    server_pid=$!
    for _ in $(seq 50); do
        in_use $port && return 0
        sleep 0.1
    done
    echo "$server did not start" >&2
    return 1
}
# _TPM_Init (a power cycle) of the running TPM.
tpm_init() { swtpm_ioctl --tcp 127.0.0.1:$ctrl -i >/dev/null; }

export TPM2TOOLS_TCTI="pcap:swtpm:host=127.0.0.1,port=$port"
# `begin NAME [bare]` ... tools ... `end`: one seed file, $server-NAME.
begin() {
    name=$server-$1
    start_server "${2:-}"
    export TCTI_PCAP_FILE="$work/$name.pcap"
    rm -f "$TCTI_PCAP_FILE"
}
end() {
    python3 "$here/pcap2corpus.py" "$new/$name" "$TCTI_PCAP_FILE"
}
q() { "$@" >/dev/null || echo "note: $server: $* failed" >&2; }
# Run a tool, then flush transient objects as a resource manager would (swtpm has 3 slots).
qf() {
    q "$@"
    q tpm2_flushcontext -t
}

printf 'trustlaunch fuzz corpus: a measured event\n' >"$work/small.txt"
head -c 2500 /dev/zero | tr '\0' 'x' >"$work/big.bin"
head -c 32 /dev/zero | tr '\0' 'A' >"$work/32.bin"
sha1=$(printf '%040d' 1)
sha256=$(printf '%064d' 2)

scenarios() {
    begin startup bare
    q tpm2_startup -c
    end

    begin startup-state bare
    q tpm2_startup -c
    q tpm2_pcrextend "16:sha256=$sha256"
    q tpm2_shutdown
    tpm_init
    q tpm2_startup
    q tpm2_pcrread sha256:16
    end

    for cap in algorithms commands pcrs properties-fixed properties-variable handles-nv-index \
        handles-pcr handles-transient ecc-curves; do
        begin "getcap-$cap"
        q tpm2_getcap "$cap"
        end
    done

    begin pcrread
    q tpm2_pcrread
    q tpm2_pcrread sha1:0,1,2,3+sha256:all
    end

    begin pcrextend
    q tpm2_pcrextend "16:sha1=$sha1,sha256=$sha256"
    q tpm2_pcrextend "23:sha256=$sha256"
    q tpm2_pcrread sha1:16+sha256:16,23
    end

    begin pcrevent
    q tpm2_pcrevent 16 "$work/small.txt"
    q tpm2_pcrevent 16 "$work/big.bin"
    q tpm2_pcrread sha1:16+sha256:16
    end

    begin pcrreset
    q tpm2_pcrextend "16:sha256=$sha256"
    q tpm2_pcrreset 16
    q tpm2_pcrread sha256:16
    end

    begin hash-small
    q tpm2_hash -g sha256 "$work/small.txt"
    q tpm2_hash -g sha1 "$work/small.txt"
    q tpm2_hash -g sha384 -C n "$work/small.txt"
    end

    begin hash-large
    q tpm2_hash -g sha256 "$work/big.bin"
    end

    begin getrandom
    q tpm2_getrandom 32
    q tpm2_getrandom 8 --hex
    end

    begin readclock
    q tpm2_readclock
    end

    begin selftest
    q tpm2_selftest -f
    q tpm2_incrementalselftest sha256 || true
    q tpm2_gettestresult
    q tpm2_stirrandom <"$work/small.txt"
    q tpm2_testparms rsa2048
    end

    nv=0x1500016
    begin nv-ordinary
    q tpm2_nvdefine $nv -C o -s 32 -a "ownerread|ownerwrite|authread|authwrite"
    q tpm2_nvwrite $nv -C o -i "$work/32.bin"
    q tpm2_nvread $nv -C o -s 32
    q tpm2_nvreadpublic $nv
    q tpm2_nvundefine $nv -C o
    end

    begin nv-auth
    q tpm2_nvdefine $nv -C o -s 16 -p secret -a "authread|authwrite"
    printf 'sixteen bytes!!!' | q tpm2_nvwrite $nv -P secret -i-
    q tpm2_nvread $nv -P secret -s 16
    q tpm2_nvundefine $nv -C o
    end

    begin nv-counter
    q tpm2_nvdefine $nv -C o -s 8 -a "ownerread|ownerwrite|authread|authwrite|nt=counter"
    q tpm2_nvincrement $nv -C o
    q tpm2_nvincrement $nv
    q tpm2_nvread $nv -C o -s 8
    q tpm2_nvundefine $nv -C o
    end

    begin nv-extend
    q tpm2_nvdefine $nv -C o -s 32 -g sha256 -a "ownerread|ownerwrite|authread|authwrite|nt=extend"
    q tpm2_nvextend $nv -C o -i "$work/small.txt"
    q tpm2_nvread $nv -C o -s 32
    q tpm2_nvundefine $nv -C o
    end

    begin nv-bits
    q tpm2_nvdefine $nv -C o -s 8 -a "ownerread|ownerwrite|authread|authwrite|nt=bits"
    q tpm2_nvsetbits $nv -C o -i 0x5
    q tpm2_nvsetbits $nv -i 0x100
    q tpm2_nvread $nv -C o -s 8
    q tpm2_nvundefine $nv -C o
    end

    begin nv-locks
    q tpm2_nvdefine $nv -C o -s 32 -a "ownerread|ownerwrite|authread|authwrite|writedefine|read_stclear"
    q tpm2_nvwrite $nv -C o -i "$work/32.bin"
    q tpm2_nvwritelock $nv -C o
    q tpm2_nvwrite $nv -C o -i "$work/32.bin" 2>/dev/null || true
    q tpm2_nvreadlock $nv -C o
    q tpm2_nvread $nv -C o -s 32 2>/dev/null || true
    q tpm2_nvundefine $nv -C o
    end

    begin nv-platform
    q tpm2_nvdefine 0x1400002 -C p -s 16 -a "ppread|ppwrite|platformcreate|authread|authwrite"
    printf 'platform index!!' | q tpm2_nvwrite 0x1400002 -C p -i-
    q tpm2_nvread 0x1400002 -C p -s 16
    q tpm2_nvundefine 0x1400002 -C p
    end

    begin pcrallocate
    q tpm2_pcrallocate sha1:all+sha256:all+sha384:all
    q tpm2_shutdown -c
    tpm_init
    q tpm2_startup -c
    q tpm2_pcrread
    end

    begin primary-ecc
    qf tpm2_createprimary -C o -G ecc -c "$work/p.ctx"
    q tpm2_readpublic -c "$work/p.ctx"
    qf tpm2_evictcontrol -C o -c "$work/p.ctx" 0x81000001
    q tpm2_getcap handles-persistent
    qf tpm2_evictcontrol -C o -c 0x81000001
    end

    # RSA 2048 key generation costs ~1 s a run in the fuzz build: one seed (ours) is enough.
    if [[ $server == ours ]]; then
        begin primary-rsa
        qf tpm2_createprimary -C o -c "$work/p.ctx"
        end
    fi

    begin key-ecc
    qf tpm2_createprimary -C o -G ecc -c "$work/p.ctx"
    qf tpm2_create -C "$work/p.ctx" -G ecc -u "$work/k.pub" -r "$work/k.priv"
    qf tpm2_load -C "$work/p.ctx" -u "$work/k.pub" -r "$work/k.priv" -c "$work/k.ctx"
    q tpm2_sign -c "$work/k.ctx" -g sha256 -o "$work/sig" "$work/small.txt"
    q tpm2_verifysignature -c "$work/k.ctx" -g sha256 -m "$work/small.txt" -s "$work/sig"
    end

    begin hmac
    qf tpm2_createprimary -C o -G ecc -c "$work/p.ctx"
    qf tpm2_create -C "$work/p.ctx" -G hmac -c "$work/h.ctx"
    q tpm2_hmac -c "$work/h.ctx" "$work/small.txt"
    end

    begin quote
    qf tpm2_createprimary -C e -G ecc -c "$work/ek.ctx"
    qf tpm2_createprimary -C o -G ecc:ecdsa-sha256:null -c "$work/ak.ctx" \
        -a "restricted|sign|fixedtpm|fixedparent|sensitivedataorigin|userwithauth"
    q tpm2_quote -c "$work/ak.ctx" -l sha256:0,16 -q 0123456789abcdef \
        -m "$work/q.msg" -s "$work/q.sig" -o "$work/q.pcrs"
    end

    begin seal-policy-pcr
    qf tpm2_createprimary -C o -G ecc -c "$work/p.ctx"
    q tpm2_pcrread -o "$work/pcr.bin" sha256:0,16
    q tpm2_createpolicy --policy-pcr -l sha256:0,16 -f "$work/pcr.bin" -L "$work/pol"
    printf 'sealed secret' | qf tpm2_create -C "$work/p.ctx" -L "$work/pol" -i- \
        -u "$work/s.pub" -r "$work/s.priv"
    qf tpm2_load -C "$work/p.ctx" -u "$work/s.pub" -r "$work/s.priv" -c "$work/s.ctx"
    q tpm2_startauthsession --policy-session -S "$work/sess"
    q tpm2_policypcr -S "$work/sess" -l sha256:0,16
    q tpm2_unseal -c "$work/s.ctx" -p "session:$work/sess"
    q tpm2_flushcontext "$work/sess"
    end

    begin hierarchy
    q tpm2_changeauth -c o ownerpass
    q tpm2_changeauth -c o -p ownerpass
    q tpm2_dictionarylockout -s -n 5 -t 6 -l 10
    q tpm2_clear -c p
    end

    begin shutdown-clear
    q tpm2_shutdown -c
    end

    begin shutdown-state
    q tpm2_shutdown
    end
}

for server in swtpm ours; do
    scenarios
done
stop_server
rm -f "$out"/swtpm-* "$out"/ours-*
cp "$new"/* "$out"/
echo "corpus in $out"

# tpm_state seeds: NV indices of every type, a changed PCR allocation, saved Shutdown(STATE)
# data, and a fresh TPM.
"$replay" --states "$work/states" "$out"/ours-* >/dev/null
mkdir -p "$here/tpm_state"
rm -f "$here"/tpm_state/ours-*
for f in nv-ordinary.max nv-auth.max nv-counter.max nv-bits.max nv-extend.max nv-locks.max \
    nv-platform.max pcrallocate pcrallocate.su pcrextend.su startup; do
    cp "$work/states/ours-$f" "$here/tpm_state/ours-$f"
done
echo "state seeds in $here/tpm_state"
