/* A minimal UEFI application for tests/byo_keys_qemu.rs: it prints one line on the console
 * (OVMF mirrors it to the serial port) and powers the machine off. Built with gnu-efi. */
#include <efi.h>
#include <efilib.h>
EFI_STATUS EFIAPI efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *st) {
    InitializeLib(image, st);
    Print(L"TRUSTLAUNCH-BYO-KEYS: the signed image ran\r\n");
    uefi_call_wrapper(st->RuntimeServices->ResetSystem, 4, EfiResetShutdown, EFI_SUCCESS, 0, NULL);
    return EFI_SUCCESS;
}
