#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Does a download on the kernel path keep flowing while no sockredir process runs?

Starts sockredir --mode bpf in front of a Unix backend that streams a counter pattern, connects a
TCP client, and once bytes flow takes copies of every socket fd sockredir holds (pidfd_getfd, as
systemd's fd store would hold them), then SIGKILLs sockredir. The client checks every byte and
reports how many arrived before the kill and in the seconds after. Run as root, in a network
namespace of its own: unshare -n python3 bench/experiments/kernel-path-orphan.py SOCKREDIR
"""
import ctypes, os, signal, socket, struct, subprocess, sys, threading, time

SYS_pidfd_getfd = 438
libc = ctypes.CDLL(None, use_errno=True)
sockredir = sys.argv[1]
tmp = "/tmp/orphan-%d" % os.getpid()
os.makedirs(tmp)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

def pattern(off, n):
    # 8-byte big-endian counters: byte i of the stream is byte i%8 of counter i//8.
    first = off // 8
    buf = b"".join(struct.pack(">Q", k) for k in range(first, first + n // 8 + 2))
    s = off - first * 8
    return buf[s:s + n]

lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
lsock.bind(tmp + "/b.sock")
lsock.listen(8)

def backend():
    c, _ = lsock.accept()
    off = 0
    chunk = 1 << 16
    try:
        while True:
            c.sendall(pattern(off, chunk))
            off += chunk
            time.sleep(0.002)  # about 30 MB/s: a transfer that lasts
    except OSError:
        pass

threading.Thread(target=backend, daemon=True).start()
proxy = subprocess.Popen([sockredir, "--mode", "bpf", "--name", "orphan%d" % os.getpid(),
                          "--listen", "127.0.0.1:7100", tmp + "/b.sock"], stderr=subprocess.PIPE)
time.sleep(0.5)
cl = socket.create_connection(("127.0.0.1", 7100))
got = [0]
bad = [None]

def client():
    while True:
        d = cl.recv(1 << 16)
        if not d:
            return
        if bad[0] is None and d != pattern(got[0], len(d)):
            bad[0] = got[0]
        got[0] += len(d)

threading.Thread(target=client, daemon=True).start()
time.sleep(1.0)
pidfd = os.pidfd_open(proxy.pid)
held = []
for fd in os.listdir("/proc/%d/fd" % proxy.pid):
    if os.readlink("/proc/%d/fd/%s" % (proxy.pid, fd)).startswith("socket:"):
        r = libc.syscall(SYS_pidfd_getfd, pidfd, int(fd), 0)
        if r >= 0:
            held.append(r)
before = got[0]
proxy.send_signal(signal.SIGKILL)
proxy.wait()
t0 = time.time()
samples = []
for _ in range(4):
    time.sleep(1.0)
    samples.append(got[0])
print("held %d socket fds of sockredir; %d bytes before SIGKILL; after it, at 1 s steps: %s; "
      "first wrong byte: %s" % (len(held), before, [s - before for s in samples], bad[0]))
subprocess.run(["rm", "-rf", "/sys/fs/bpf/sockredir/orphan%d" % os.getpid(), tmp])
