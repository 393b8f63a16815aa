#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A client that resets its connection mid-transfer (SO_LINGER 0, then close), for tests/soak.sh.

    reset_client.py PORT down|up SEED MIB

down: asks the proto backend for a 2 GiB reply and resets after MIB MiB of it arrived.
up:   announces a 2 GiB upload and resets after sending MIB MiB of it.
Every socket operation is bounded by a 20 s timeout. Prints one line; exit 0 once the reset was
sent, 1 if the transfer ended some other way first (the proxy or backend closed, a timeout).
"""
import socket
import struct
import sys
import time

MAGIC = 0x51505253
TOTAL = 2 << 30


def main():
    port, mode, seed, mib = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    limit = mib << 20
    start = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.settimeout(20)
    moved = 0
    try:
        if mode == "down":
            s.sendall(struct.pack("<IIQQQ", MAGIC, 0, seed, 0, TOTAL))
            while moved < limit:
                b = s.recv(1 << 20)
                if not b:
                    print(f"reset_client: EOF after {moved} bytes, before the reset")
                    return 1
                moved += len(b)
        elif mode == "up":
            # The payload is not the seeded stream: the backend will see a short upload anyway.
            s.sendall(struct.pack("<IIQQQ", MAGIC, 0, seed, TOTAL, 0))
            chunk = bytes(256 << 10)
            while moved < limit:
                s.sendall(chunk)
                moved += len(chunk)
        else:
            print(f"reset_client: bad mode {mode}", file=sys.stderr)
            return 2
    except OSError as e:
        print(f"reset_client: {e} after {moved} bytes, before the reset")
        return 1
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    print(f"reset_client: reset {mode} after {moved} bytes in {time.monotonic() - start:.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
