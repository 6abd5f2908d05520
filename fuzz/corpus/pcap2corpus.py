#!/usr/bin/env python3
"""Turn a tpm2-tss pcap TCTI capture into a `tpm_execute` seed input.

tpm2-tss's pcap TCTI (TPM2TOOLS_TCTI="pcap:<child tcti>", TCTI_PCAP_FILE=<file>) appends to
<file> a pcapng section per process: raw IPv4 (link type 228) TCP segments between the client
and port 2321 (the TPM), one per command or response. This script takes the bytes the client
sent to port 2321, re-frames them into TPM commands by the size field of each header, and
writes them in the input format of the tpm_execute fuzz target (fuzz/src/lib.rs, `records`):

    control: u8          locality (bits 0-2) and flags
    length:  u16 BE
    command: length bytes

Flags set here so the seeds take the paths a real platform takes: a TPM2_Shutdown is followed
by a power cycle through the saved state (0x10); a TPM2_Startup is preceded by _TPM_Init
(0x20); the last command asks for a state round trip (0x08).

Usage: pcap2corpus.py OUT_FILE PCAP...   (the commands of all PCAPs, in order, into OUT_FILE)
       pcap2corpus.py --list PCAP...     (print the commands, one a line, in hex)
No dependencies beyond the Python 3 standard library.
"""

import struct
import sys

TPM_PORT = 2321
LINKTYPE_IPV4 = 228
LINKTYPE_RAW = 101

CC_STARTUP = 0x144
CC_SHUTDOWN = 0x145

CHECK_RESTORE = 0x08
POWER_CYCLE = 0x10
INIT = 0x20


def pcapng_packets(blob):
    """Yield the packet data of every Enhanced Packet Block, across sections."""
    off = 0
    endian = "<"
    linktypes = []
    while off + 12 <= len(blob):
        btype_raw = blob[off : off + 4]
        if btype_raw == b"\x0a\x0d\x0d\x0a":  # Section Header Block: byte order magic
            endian = "<" if blob[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            linktypes = []
        btype, blen = struct.unpack(endian + "II", blob[off : off + 8])
        if blen < 12 or off + blen > len(blob):
            raise ValueError(f"bad pcapng block at offset {off}")
        body = blob[off + 8 : off + blen - 4]
        if btype == 1:  # Interface Description Block
            linktypes.append(struct.unpack(endian + "H", body[:2])[0])
        elif btype == 6:  # Enhanced Packet Block
            iface, _hi, _lo, caplen, _origlen = struct.unpack(endian + "IIIII", body[:20])
            if linktypes[iface] not in (LINKTYPE_IPV4, LINKTYPE_RAW):
                raise ValueError(f"unexpected link type {linktypes[iface]}")
            yield body[20 : 20 + caplen]
        off += blen


def tcp_payload(packet):
    """(source port, destination port, payload) of an IPv4 TCP packet, else None."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack(">H", packet[2:4])[0]
    if packet[9] != 6:  # TCP
        return None
    tcp = packet[ihl:total]
    sport, dport = struct.unpack(">HH", tcp[:4])
    doff = (tcp[12] >> 4) * 4
    return sport, dport, tcp[doff:]


def commands(pcap_paths):
    """The TPM commands the client sent, in order."""
    stream = bytearray()
    for path in pcap_paths:
        with open(path, "rb") as f:
            blob = f.read()
        for packet in pcapng_packets(blob):
            seg = tcp_payload(packet)
            if seg and seg[1] == TPM_PORT:
                stream += seg[2]
    out = []
    while len(stream) >= 10:
        size = struct.unpack(">I", stream[2:6])[0]
        if size < 10 or size > len(stream):
            raise ValueError(f"command stream out of frame: {bytes(stream[:16]).hex()}")
        out.append(bytes(stream[:size]))
        del stream[:size]
    if stream:
        raise ValueError(f"{len(stream)} trailing bytes in the command stream")
    return out


def encode(cmds):
    out = bytearray()
    for i, cmd in enumerate(cmds):
        code = struct.unpack(">I", cmd[6:10])[0]
        control = 0  # locality 0, as tpm2-tools uses
        if code == CC_SHUTDOWN:
            control |= POWER_CYCLE
        if code == CC_STARTUP:
            control |= INIT
        if i == len(cmds) - 1:
            control |= CHECK_RESTORE
        out += bytes([control]) + struct.pack(">H", len(cmd)) + cmd
    return bytes(out)


def main(argv):
    if len(argv) >= 2 and argv[0] == "--list":
        for cmd in commands(argv[1:]):
            print(cmd.hex())
        return 0
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmds = commands(argv[1:])
    with open(argv[0], "wb") as f:
        f.write(encode(cmds))
    print(f"{argv[0]}: {len(cmds)} commands")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
