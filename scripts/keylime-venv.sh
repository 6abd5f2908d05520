#!/usr/bin/env bash
# A Python environment where Keylime's verifier code imports, for the side-by-side in
# `trustlaunch bench attest --keylime DIR/bin/python`. Keylime (PyPI) needs Debian's gpgme
# bindings (python3-gpg, for Debian's python3) and a few modules its wheel does not declare.
# Usage: bash scripts/keylime-venv.sh [DIR]   (default /opt/keylime-venv)
set -euo pipefail
dir=${1:-/opt/keylime-venv}
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
dpkg -s python3-gpg >/dev/null 2>&1 || "${sudo[@]}" apt-get install -y -q python3-gpg tpm2-tools
[[ -x "$dir/bin/python" ]] || "${sudo[@]}" /usr/bin/python3 -m venv --system-site-packages "$dir"
"${sudo[@]}" "$dir/bin/pip" install -q keylime sqlalchemy alembic tornado pyyaml requests jinja2 \
    lark packaging typing_extensions jsonschema psutil pyasn1 pyasn1-modules cryptography pyzmq
"$dir/bin/python" -c 'import importlib.metadata as m; from keylime import cloud_verifier_common; print("keylime", m.version("keylime"), "in", "'"$dir"'")'
