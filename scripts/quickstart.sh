#!/usr/bin/env bash
# The project's main job on a fresh Debian machine with Rust: install what building needs
# (OpenSSL's headers and static libraries, which .cargo/config.toml links; a C compiler for
# the crates that build C), then run `trustlaunch quickstart`, which installs what it runs
# (ovmf, qemu-system-x86, cpio) itself. Arguments go to the quickstart.
# Usage: bash scripts/quickstart.sh [QUICKSTART OPTIONS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/lib/debian.sh
ensure_packages libssl-dev pkg-config gcc

exec cargo run --release -- quickstart "$@"
