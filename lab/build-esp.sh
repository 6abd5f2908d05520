#!/usr/bin/env bash
# lab/build-esp.sh WORKDIR
#
# Builds a real Debian Secure Boot chain into WORKDIR/esp, from Debian's own signed binaries:
#   EFI/BOOT/BOOTX64.EFI   shim, signed by Microsoft's UEFI CA   (shim-signed)
#   EFI/BOOT/grubx64.efi   grub, signed by Debian                (grub-efi-amd64-signed)
#   EFI/debian/grub.cfg    read by Debian's signed grub (its prefix is /EFI/debian);
#   EFI/BOOT/grub.cfg      the same file, for grub builds that look beside themselves
#   vmlinuz                Debian's signed kernel                (linux-image-amd64's image)
#   initrd.img             a busybox initramfs (lab/init.sh as /init) that reports Secure
#                          Boot, /dev/tpm0, the PCRs and the firmware event log on the serial
#                          console between markers, then powers off
# The chain's packages are fetched with `apt-get download` into WORKDIR/debs and unpacked there:
# nothing is installed into the host's /boot or /usr/lib/shim. The tools that boot.sh needs
# (qemu-system-x86, ovmf) and cpio are installed with apt-get when missing.
#
# Idempotent and cached: downloads are kept, and the ESP is rebuilt only when this script,
# lab/init.sh or a package version changed (WORKDIR/esp.stamp). The initramfs is reproducible
# (fixed owners and times, sorted entries, gzip -n), so the same inputs give the same bytes and
# hence the same PCR 9. WORKDIR/versions.txt names the package versions used.
set -euo pipefail
W=${1:?usage: lab/build-esp.sh WORKDIR}
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$W"
W=$(cd "$W" && pwd)
export DEBIAN_FRONTEND=noninteractive

# One build at a time per WORKDIR (the test and a person may share a cache directory).
exec 9>"$W/.lock"
flock 9

say() { printf 'build-esp: %s\n' "$*" >&2; }
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
apt_updated=
apt_update() {
    [[ -n $apt_updated ]] && return 0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
}

# --- Host tools ---------------------------------------------------------------------------
missing=()
for pkg in qemu-system-x86 ovmf cpio; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt_update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- The chain's packages, downloaded (not installed) --------------------------------------
# linux-image-amd64 is a metapackage: the signed image is the package it depends on.
mkdir -p "$W/debs"
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z $kernel_pkg ]]; then
    apt_update
    kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n $kernel_pkg ]] || { say "cannot resolve linux-image-amd64"; exit 1; }

pkgs=(shim-signed grub-efi-amd64-signed "$kernel_pkg" busybox-static)
declare -A cand deb
while read -r name ver; do cand[$name]=$ver; done < <(apt-cache policy "${pkgs[@]}" 2>/dev/null |
    awk '/^[^ ].*:$/ {sub(/:$/, ""); name = $0} /Candidate:/ {print name, $2}')
for pkg in "${pkgs[@]}"; do
    ver=${cand[$pkg]:-}
    [[ -n $ver && $ver != "(none)" ]] || { say "no candidate version for $pkg"; exit 1; }
    # apt-get download names files PKG_VERSION_ARCH.deb with ':' in the epoch escaped as %3a.
    f=$(ls "$W/debs/${pkg}_${ver/:/%3a}_"*.deb 2>/dev/null | head -1 || true)
    if [[ -z $f ]]; then
        say "downloading $pkg $ver"
        (cd "$W/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null) || {
            # Stale package lists name a version the archive no longer serves.
            [[ -z $apt_updated ]] || exit 1
            apt_update
            exec "$LAB/build-esp.sh" "$W"
        }
        f=$(ls "$W/debs/${pkg}_${ver/:/%3a}_"*.deb | head -1)
    fi
    deb[$pkg]=$f
done

versions=$(for pkg in "${pkgs[@]}"; do
    printf '%s %s\n' "$pkg" "$(dpkg-deb -f "${deb[$pkg]}" Version)"
done)
stamp=$( (printf '%s\n' "$versions"; cat "$LAB/build-esp.sh" "$LAB/init.sh") | sha256sum | cut -d' ' -f1)
if [[ -f $W/esp.stamp && $(cat "$W/esp.stamp") == "$stamp" && -f $W/esp/initrd.img ]]; then
    say "up to date: $W/esp"
    exit 0
fi

# --- Unpack --------------------------------------------------------------------------------
# Only the few files the ESP needs (the kernel package's modules alone unpack to ~400 MB).
rm -rf "$W/pkgs" && mkdir -p "$W/pkgs"
extract() { # PKG PATTERN...
    local pkg=$1
    shift
    mkdir -p "$W/pkgs/$pkg"
    dpkg-deb --fsys-tarfile "${deb[$pkg]}" | tar -x -C "$W/pkgs/$pkg" --wildcards "$@"
}
extract shim-signed ./usr/lib/shim/shimx64.efi.signed
extract grub-efi-amd64-signed ./usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
extract "$kernel_pkg" './boot/vmlinuz-*' '*/kernel/fs/efivarfs/efivarfs.ko'
extract busybox-static ./bin/busybox
kdir=$W/pkgs/$kernel_pkg
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -1)
efivarfs=$(find "$kdir/lib/modules" -name efivarfs.ko | head -1)
[[ -f $vmlinuz && -f $efivarfs ]] || { say "kernel package lacks vmlinuz or efivarfs.ko"; exit 1; }

# --- initramfs -----------------------------------------------------------------------------
# efivarfs is a module in Debian's kernel; it is signed by Debian, so it loads under the
# lockdown that Secure Boot turns on, and /init reads the SecureBoot variable through it.
root=$W/rootfs
rm -rf "$root" && mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
cp "$W/pkgs/busybox-static/bin/busybox" "$root/bin/busybox"
cp "$efivarfs" "$root/lib/modules/efivarfs.ko"
install -m 0755 "$LAB/init.sh" "$root/init"
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -n -9 >"$W/initrd.img"

# --- ESP -----------------------------------------------------------------------------------
new=$W/esp.new
rm -rf "$new" && mkdir -p "$new/EFI/BOOT" "$new/EFI/debian"
cp "$W/pkgs/shim-signed/usr/lib/shim/shimx64.efi.signed" "$new/EFI/BOOT/BOOTX64.EFI"
cp "$W/pkgs/grub-efi-amd64-signed/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" \
    "$new/EFI/BOOT/grubx64.efi"
cp "$vmlinuz" "$new/vmlinuz"
cp "$W/initrd.img" "$new/initrd.img"
# Every line grub runs is measured into PCR 8: keep this file short and stable.
printf 'set timeout=0\nlinux /vmlinuz console=ttyS0 panic=-1\ninitrd /initrd.img\nboot\n' \
    >"$new/EFI/debian/grub.cfg"
cp "$new/EFI/debian/grub.cfg" "$new/EFI/BOOT/grub.cfg"

rm -rf "$W/esp" && mv "$new" "$W/esp"
printf '%s\n' "$versions" >"$W/versions.txt"
(cd "$W/esp" && find . -type f | LC_ALL=C sort | xargs sha256sum) >"$W/esp.sha256"
printf '%s\n' "$stamp" >"$W/esp.stamp"
say "built $W/esp"
sed 's/^/build-esp:   /' "$W/versions.txt" >&2
