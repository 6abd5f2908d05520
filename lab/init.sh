#!/bin/busybox sh
# /init of the lab's initramfs (lab/build-esp.sh puts it there). Reports, on the serial
# console, what the booted kernel sees of Secure Boot and of the TPM, then powers off.
# Output contract (lab/boot.sh and crates/trustlaunch/tests/qemu_boot.rs parse it):
#   === LAB BEGIN
#   SECUREBOOT enabled|disabled|unknown   (the SecureBoot EFI variable, else the kernel's word)
#   SECUREBOOT-EFIVAR <byte>|none
#   SECUREBOOT-KERNEL enabled|disabled|unknown
#   LOCKDOWN <contents of /sys/kernel/security/lockdown>
#   TPM0 ok|fail <why>                    (TPM2_GetRandom(8) through /dev/tpm0)
#   TPM0-VERSION <major>
#   PLATFORM-AUTH set rc=<hex>|empty       (whether the firmware took the platform hierarchy)
#   PCR <bank> <index> <HEX>             (sha1, sha256, sha384; 0-9 and 14; "none" if unreadable)
#   DMESG <line>                          (the kernel's lines about TPM, EFI, Secure Boot)
#   === EVENTLOG BEGIN
#   <binary_bios_measurements, base64>
#   === EVENTLOG END
#   === LAB END
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel could not hand /init a console.
exec </dev/console >/dev/console 2>&1
mount -t securityfs securityfs /sys/kernel/security
insmod /lib/modules/efivarfs.ko 2>/dev/null
mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null

echo "=== LAB BEGIN"
var=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
efivar=none
# 4 bytes of attributes, then the one-byte value (efivarfs ignores od's seek, so read it all).
[ -r "$var" ] && efivar=$(od -An -tu1 "$var" | awk '{ for (i = 1; i <= NF; i++) if (++n == 5) print $i }')
kernel=unknown
dmesg | grep -qi 'secure boot enabled' && kernel=enabled
dmesg | grep -qi 'secure boot disabled' && kernel=disabled
case "$efivar" in
    1) sb=enabled ;;
    0) sb=disabled ;;
    *) sb=$kernel ;;
esac
echo "SECUREBOOT $sb"
echo "SECUREBOOT-EFIVAR $efivar"
echo "SECUREBOOT-KERNEL $kernel"
echo "LOCKDOWN $(cat /sys/kernel/security/lockdown 2>/dev/null || echo none)"

if [ -c /dev/tpm0 ]; then
    # TPM2_GetRandom(8): tag 8001, size 12, code 0000017B, bytesRequested 8. Success is
    # tag 8001, size 20, TPM_RC_SUCCESS, then a TPM2B of 8 bytes.
    rsp=$( (exec 3<>/dev/tpm0 &&
        printf '\200\001\000\000\000\014\000\000\001\173\000\010' >&3 &&
        dd bs=4096 count=1 <&3 2>/dev/null) | od -An -tx1 | tr -d ' \n')
    case "$rsp" in
        8001000000140000000000*) echo "TPM0 ok" ;;
        "") echo "TPM0 fail no response" ;;
        *) echo "TPM0 fail response $rsp" ;;
    esac
else
    echo "TPM0 fail no /dev/tpm0"
fi
echo "TPM0-VERSION $(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null || echo none)"

for bank in sha1 sha256 sha384; do
    for i in 0 1 2 3 4 5 6 7 8 9 14; do
        v=$(cat /sys/class/tpm/tpm0/pcr-$bank/$i 2>/dev/null)
        echo "PCR $bank $i ${v:-none}"
    done
done

# Firmware must not leave the platform hierarchy to the OS: OVMF sets platformAuth to a random
# value (TPM2_HierarchyChangeAuth) before booting. Probe it with TPM2_ClearControl(TPM_RH_PLATFORM,
# disable=NO) under an empty password: it changes nothing (disableClear is already clear) and
# succeeds only when platformAuth is still empty; otherwise the TPM answers TPM_RC_BAD_AUTH (9a2).
# The platform hierarchy is exempt from dictionary-attack lockout, so a refusal costs nothing.
if [ -c /dev/tpm0 ]; then
    rsp=$( (exec 3<>/dev/tpm0 &&
        printf '\200\002\000\000\000\034\000\000\001\047\100\000\000\014\000\000\000\011\100\000\000\011\000\000\000\000\000\000' >&3 &&
        dd bs=4096 count=1 <&3 2>/dev/null) | od -An -tx1 | tr -d ' \n')
    rc=$(echo "$rsp" | cut -c13-20)
    case "$rc" in
        00000000) echo "PLATFORM-AUTH empty" ;;
        "") echo "PLATFORM-AUTH unknown no response" ;;
        *) echo "PLATFORM-AUTH set rc=$rc" ;;
    esac
fi
dmesg | grep -iE 'tpm|secure ?boot|lockdown|efi: ' | sed 's/^/DMESG /'

echo "=== EVENTLOG BEGIN"
base64 </sys/kernel/security/tpm0/binary_bios_measurements
echo "=== EVENTLOG END"
echo "=== LAB END"
poweroff -f
