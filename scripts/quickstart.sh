#!/usr/bin/env bash
# The project's main job on a fresh Debian machine with Rust: install what building needs
# (OpenSSL's headers and static libraries, which .cargo/config.toml links; a C compiler for
# the crates that build C), then run `trustlaunch quickstart`, which installs what it runs
# (ovmf, qemu-system-x86, cpio) itself. Arguments go to the quickstart.
# Usage: bash scripts/quickstart.sh [QUICKSTART OPTIONS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
for pkg in libssl-dev pkg-config gcc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec cargo run --release -- quickstart "$@"
