#!/usr/bin/env bash
# lab/boot.sh WORKDIR CTRL_SOCKET OUTPREFIX
#
# Boots WORKDIR/esp (from lab/build-esp.sh) under OVMF with Secure Boot enforced, Microsoft's
# keys enrolled (OVMF_CODE_4M.ms.fd read-only, a private copy of OVMF_VARS_4M.ms.fd, q35 with
# SMM and secure pflash), and the TPM served on CTRL_SOCKET through the swtpm control protocol
# (QEMU's `-tpmdev emulator` with a `tpm-crb` device, or `tpm-tis` with TPM_DEVICE=tpm-tis).
# The TPM server must already listen there.
#
# Writes:
#   OUTPREFIX.log       the serial console: OVMF, shim, grub, the kernel and the lab's /init
#   OUTPREFIX.qemu.log  QEMU's own stderr (tpm-emulator errors land here)
#   OUTPREFIX.pcrs      "PCR <bank> <index> <HEX>" lines, bank sha1|sha256|sha384, index 0-9
#                       and 14, HEX upper case as the kernel's sysfs prints it
#   OUTPREFIX.report    the /init's other lines: SECUREBOOT, SECUREBOOT-EFIVAR,
#                       SECUREBOOT-KERNEL, LOCKDOWN, TPM0, TPM0-VERSION, PLATFORM-AUTH
#                       (see lab/init.sh)
#   OUTPREFIX.eventlog  the firmware event log (binary_bios_measurements), raw bytes
#   OUTPREFIX.esp/, OUTPREFIX.vars.fd   the boot's private ESP and variable store
# Exits 0 when the guest reached the end of /init (the report is complete), 1 otherwise;
# judging Secure Boot, the TPM and the values is the caller's business.
#
# Environment: BOOT_TIMEOUT (seconds, default 300); LAB_ACCEL=tcg|kvm (default tcg: KVM works
# only where it offers SMM to the guest).
set -euo pipefail
W=${1:?usage: lab/boot.sh WORKDIR CTRL_SOCKET OUTPREFIX}
SOCK=${2:?usage: lab/boot.sh WORKDIR CTRL_SOCKET OUTPREFIX}
OUT=${3:?usage: lab/boot.sh WORKDIR CTRL_SOCKET OUTPREFIX}
OVMF=/usr/share/OVMF
[[ -f $W/esp/EFI/BOOT/BOOTX64.EFI ]] || { echo "boot: no ESP in $W (run lab/build-esp.sh $W)" >&2; exit 2; }
[[ -f $OVMF/OVMF_CODE_4M.ms.fd ]] || { echo "boot: $OVMF/OVMF_CODE_4M.ms.fd missing (apt-get install ovmf)" >&2; exit 2; }

# The TPM server may still be starting.
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || { echo "boot: no socket at $SOCK" >&2; exit 2; }

# Secure Boot needs SMM; KVM here (nested) refuses it ("System Management Mode not supported by
# this hypervisor"), so software emulation is the default.
accel=${LAB_ACCEL:-tcg}

mkdir -p "$(dirname "$OUT")"
rm -rf "$OUT.esp" "$OUT".{log,qemu.log,pcrs,report,eventlog}
# vvfat in rw mode writes back into its directory: each boot gets its own copy, so boots can
# run side by side and the shared ESP stays as built.
cp -r "$W/esp" "$OUT.esp"
cp "$OVMF/OVMF_VARS_4M.ms.fd" "$OUT.vars.fd"

start=$SECONDS
rc=0
timeout "${BOOT_TIMEOUT:-300}" qemu-system-x86_64 \
    -machine q35,smm=on,accel="$accel" -m 1024 -smp 1 \
    -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,file="$OVMF/OVMF_CODE_4M.ms.fd",readonly=on \
    -drive if=pflash,format=raw,unit=1,file="$OUT.vars.fd" \
    -chardev socket,id=chrtpm,path="$SOCK" \
    -tpmdev emulator,id=tpm0,chardev=chrtpm -device ${TPM_DEVICE:-tpm-crb},tpmdev=tpm0 \
    -drive file=fat:rw:"$OUT.esp",format=raw,media=disk \
    -display none -monitor none -serial file:"$OUT.log" \
    -no-reboot -net none \
    </dev/null 2>"$OUT.qemu.log" || rc=$?
elapsed=$((SECONDS - start))
[[ -f $OUT.log ]] || : >"$OUT.log"

tr -d '\r' <"$OUT.log" >"$OUT.log.txt"
grep -a '^PCR ' "$OUT.log.txt" >"$OUT.pcrs" || true
grep -aE '^(SECUREBOOT|SECUREBOOT-EFIVAR|SECUREBOOT-KERNEL|LOCKDOWN|TPM0|TPM0-VERSION|PLATFORM-AUTH) ' \
    "$OUT.log.txt" >"$OUT.report" || true
sed -n '/^=== EVENTLOG BEGIN/,/^=== EVENTLOG END/p' "$OUT.log.txt" | grep -av '^===' |
    base64 -d >"$OUT.eventlog" 2>/dev/null || true
complete=0
grep -aq '^=== LAB END' "$OUT.log.txt" && complete=1
rm -f "$OUT.log.txt"

echo "boot: $OUT: qemu exit $rc after ${elapsed}s ($accel), report complete: $complete," \
    "$(wc -l <"$OUT.pcrs") PCRs, event log $(stat -c %s "$OUT.eventlog") bytes" >&2
if ((rc == 124)); then echo "boot: timed out after ${BOOT_TIMEOUT:-300}s" >&2; fi
if [[ -s $OUT.qemu.log ]]; then sed 's/^/boot: qemu: /' "$OUT.qemu.log" >&2; fi
((complete)) || exit 1
