#!/usr/bin/env python3
# stream-client.py PORT N U: see tests/t-banner.sh.
import array, socket, struct, sys
port, N, U = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection(("127.0.0.1", port), timeout=30)
c.sendall(b"".join(struct.pack("<Q", o) for o in range(0, U, 8)))
got = bytearray()
while d := c.recv(1 << 20):
    got += d
if got[N:] != (b"UPLOAD-OK" if U else b""):
    sys.exit("got %d of %d bytes, then %r" % (len(got), N, bytes(got[N:N + 16])))
words = array.array("Q")
words.frombytes(bytes(got[:N]))
for i, v in enumerate(words):
    if v != i * 8:
        sys.exit("the word at %d holds offset %d" % (i * 8, v))
