#!/usr/bin/env python3
# stream-backend.py PATH READY N U WAIT: see tests/t-banner.sh.
import socket, struct, sys, threading
path, ready, N, U, WAIT = sys.argv[1:3] + [int(a) for a in sys.argv[3:6]]
def block(off, n):
    return b"".join(struct.pack("<Q", o) for o in range(off, off + n, 8))
def reader(c, ok, spoke):
    got = bytearray()
    while len(got) < U and (d := c.recv(65536)):
        got += d
        spoke.set()
    spoke.set()
    ok.append(bytes(got) == block(0, U))
def serve(c):
    ok, spoke = [], threading.Event()
    t = threading.Thread(target=reader, args=(c, ok, spoke))
    t.start()
    for off in range(0, N, 65536):
        c.sendall(block(off, 65536))
        if off == 0 and WAIT:
            spoke.wait(30)
    t.join(30)
    if U:
        c.sendall(b"UPLOAD-OK" if ok == [True] else b"UPLOAD-BAD")
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
open(ready, "w").close()
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
