#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""A client for t-faults: a 2 GiB upload or download through the proxy, that reports how its
connection ended.

    fault-client.py PORT up|down UNDER_WAY_FILE KILLED_FILE

It creates UNDER_WAY_FILE once 16 MiB have moved. That is more than every buffer on the way can
hold, so the backend is connected and taking part: the test kills it only then, never before the
proxy has reached it. It then goes on until the connection ends and prints one line:

    FIN after S s       a clean end of stream (recv() returned 0), S seconds after the time
                        the test wrote into KILLED_FILE
    RST after S s       the connection was reset (ECONNRESET or EPIPE) before any FIN
    no end after S s    nothing within 20 s
"""
import os
import select
import socket
import struct
import sys
import time

PROTO_MAGIC = 0x51505253
UNDER_WAY = 16 << 20
LIMIT = 20.0

port, direction, under_way_file, killed_file = sys.argv[1:5]
upload = direction == "up"

s = socket.create_connection(("127.0.0.1", int(port)))
size = 1 << 31
s.sendall(struct.pack("<IIQQQ", PROTO_MAGIC, 0, 7, size if upload else 0, 0 if upload else size))
s.setblocking(False)


def since_kill():
    try:
        with open(killed_file) as f:
            return f"{time.time() - float(f.read()):.3f}"
    except (OSError, ValueError):
        return "(not killed yet)"


chunk, moved, start, flagged = b"\0" * 65536, 0, time.time(), False
outcome = None
while outcome is None and time.time() - start < LIMIT:
    r, w, _ = select.select([s], [s] if upload else [], [], 1)
    if r:
        try:
            data = s.recv(1 << 20)
        except ConnectionResetError:
            outcome = "RST"
            break
        if data == b"":
            outcome = "FIN"
            break
        if not upload:
            moved += len(data)
    if w:
        try:
            moved += s.send(chunk)
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            outcome = "RST"
            break
    if not flagged and moved >= UNDER_WAY:
        with open(under_way_file, "w") as f:
            f.write(f"{moved}\n")
        flagged = True

print(f"{outcome} after {since_kill()} s" if outcome else f"no end after {LIMIT:.0f} s", flush=True)
