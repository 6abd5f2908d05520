#!/usr/bin/env bash
# lab/build-node-image.sh WORKDIR
#
# Builds the node images the virtual firmware boots (`trustlaunch firmware boot`), from real
# Debian packages, on top of lab/build-esp.sh's chain. Each image is a directory
# WORKDIR/images/NAME with
#   esp/       the EFI system partition: shim, grub, grub.cfg, the signed kernel, the initrd,
#              and modules/*.ko, the kernel modules the node loads after boot
#   vars.fd    the firmware's variable store
# The images:
#   default              Debian's signed chain; modules: efivarfs.ko and vfat.ko, signed by
#                        Debian; vars: OVMF_VARS_4M.ms.fd (Microsoft's keys, Secure Boot on)
#   gpu                  default plus modules/gpu-driver.ko, an unsigned driver (a real module
#                        with its signature removed), as a GPU image's vendor driver is
#   tampered-kernel      default with one byte of the kernel's code changed (as a bootkit
#                        would): its signature no longer matches
#   secure-boot-off      default with OVMF_VARS_4M.fd (no keys enrolled: Secure Boot off)
# Cached like build-esp.sh: rebuilt when this script or the chain changed.
set -euo pipefail
W=${1:?usage: lab/build-node-image.sh WORKDIR}
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$LAB/build-esp.sh" "$W"
W=$(cd "$W" && pwd)
exec 9>"$W/.images.lock"
flock 9
say() { printf 'build-node-image: %s\n' "$*" >&2; }

stamp=$( (cat "$W/esp.stamp" "$LAB/build-node-image.sh") | sha256sum | cut -d' ' -f1)
if [[ -f $W/images.stamp && $(cat "$W/images.stamp") == "$stamp" ]]; then
    say "up to date: $W/images"
    exit 0
fi

kernel_pkg=$(awk '/^linux-image-/ {print $1; exit}' "$W/versions.txt")
deb=$(ls "$W/debs/${kernel_pkg}_"*.deb | head -1)
mods=$W/modules.tmp
rm -rf "$mods" && mkdir -p "$mods"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$mods" --wildcards '*/fs/efivarfs/efivarfs.ko' '*/fs/fat/vfat.ko' '*/fs/fat/fat.ko'
find_mod() { find "$mods" -name "$1" | head -1; }

new=$W/images.new
rm -rf "$new" && mkdir -p "$new"
mkimage() { # NAME VARS
    mkdir -p "$new/$1"
    cp -a "$W/esp" "$new/$1/esp"
    mkdir -p "$new/$1/esp/modules"
    cp "$(find_mod efivarfs.ko)" "$(find_mod vfat.ko)" "$new/$1/esp/modules/"
    cp "/usr/share/OVMF/$2" "$new/$1/vars.fd"
}
mkimage default OVMF_VARS_4M.ms.fd
mkimage gpu OVMF_VARS_4M.ms.fd
# The unsigned driver: fat.ko without its appended signature (module_signature + magic),
# which `strip --strip-debug`-style tools leave off too.
python3 - "$(find_mod fat.ko)" "$new/gpu/esp/modules/gpu-driver.ko" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
magic = b"~Module signature appended~\n"
assert data.endswith(magic), "the Debian module is not signed"
sig_len = struct.unpack(">I", data[-len(magic) - 4:-len(magic)])[0]
open(sys.argv[2], "wb").write(data[: -len(magic) - 12 - sig_len])
EOF
mkimage tampered-kernel OVMF_VARS_4M.ms.fd
# One byte inside the kernel's first section (its code), not in its headers or signature.
python3 - "$new/tampered-kernel/esp/vmlinuz" <<'EOF'
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
pe = struct.unpack_from("<I", b, 0x3C)[0]
opt = struct.unpack_from("<H", b, pe + 20)[0]
sec = pe + 24 + opt
raw_size, raw_ptr = struct.unpack_from("<II", b, sec + 16)
b[raw_ptr + raw_size // 2] ^= 0x01
open(p, "wb").write(bytes(b))
EOF
mkimage secure-boot-off OVMF_VARS_4M.fd

rm -rf "$mods" "$W/images"
mv "$new" "$W/images"
printf '%s\n' "$stamp" >"$W/images.stamp"
say "built $W/images: $(ls "$W/images" | tr '\n' ' ')"
