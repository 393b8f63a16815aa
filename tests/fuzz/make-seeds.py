#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Write the seed corpora under tests/fuzz/corpus/<target>/ (run from anywhere).

The TLS seeds are ClientHellos captured from `openssl s_client` and `curl` on this machine,
plus ones derived from them (fragmented into several records). Seeds that are already there
are overwritten; nothing else in the directories is touched.
"""
import os
import socket
import struct
import subprocess
import threading

TOP = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(TOP, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def address():
    seeds = {
        "path": "/run/app/app.sock",
        "unix-path": "unix:/run/app/app.sock",
        "abstract": "@app",
        "unix-abstract": "unix:@app",
        "ipv4": "127.0.0.1:8080",
        "ipv4-any": "0.0.0.0:80",
        "ipv6": "[::1]:8080",
        "ipv6-full": "[2001:db8:85a3:8d3:1319:8a2e:370:7348]:65535",
        "ipv6-mapped": "[::ffff:192.0.2.1]:443",
        "ipv6-scope": "[fe80::1%1]:80",
        "ipv6-scope-name": "[fe80::1%lo]:80",
        "bare-port": "8080",
        "localhost": "localhost:80",
        "name": "backend.example.internal:8443",
        "name-trailing-dot": "backend.example.:1",
        "path-max": "/" + "p" * 106,
        "abstract-max": "@" + "a" * 107,
        "bad-port-zero": "127.0.0.1:0",
        "bad-short-quad": "127.1:80",
        "bad-v6-unbracketed": "::1:80",
    }
    for name, s in seeds.items():
        write("fuzz-address", name, s)


def config():
    write("fuzz-config", "readme", """# /etc/sockredir/web.conf
backend = /run/app/app.sock
route-host = caddy.example.com=/run/caddy/caddy.sock
route-host = *.example.com=/run/www/www.sock
balance = least-conn
proxy-protocol = v2
max-connections = 5000
idle-timeout = 5min
keepalive = yes
""")
    write("fuzz-config", "everything", """; every option
mode = bpf
kernel-upload = yes
allow-unbounded-upload = yes
upload-sndbuf = 128M
name = web-1
pin-path = /sys/fs/bpf/sockredir/web-1
map-entries = 4096
listen = 8080
listen = [::1]:8443
listen = unix:@front
verbose = no
backend = @app
backend = unix:/run/b.sock
backend = 127.0.0.1:9000
route = web=/run/web.sock
route = api=[::1]:9001
route-host = API.Example.COM.=/run/api.sock
balance = round-robin
connect-timeout = 2.5s
max-fails = 5
fail-timeout = 30s
peek-timeout = 500ms
peek-fail = close
proxy-protocol = v1
max-connections = 0
idle-timeout = 10min
keepalive = 75s
exit-idle-time = 1.25min
drain-timeout = 250000us
""")
    write("fuzz-config", "spacing", "  backend=/a.sock  \n\n\t# comment\nkeepalive\t=\ton\r\n"
          "keepalive = false\nproxy-protocol = no\nmode = splice\n")
    write("fuzz-config", "empty", "")
    write("fuzz-config", "bad-key", "backend = /a.sock\nno-such-option = 1\n")
    write("fuzz-config", "bad-nested-config", "config = /etc/other.conf\n")
    write("fuzz-config", "bad-value", "backend = /a.sock\nidle-timeout = 5 min\n")
    write("fuzz-config", "bad-kernel-upload-splice",
          "kernel-upload = yes\nallow-unbounded-upload = yes\nmode = splice\n")
    write("fuzz-config", "bad-kernel-upload-unbounded", "backend = @a\nkernel-upload = on\n")


def http():
    seeds = {
        "curl": "GET / HTTP/1.1\r\nHost: caddy.example.com\r\nUser-Agent: curl/7.88.1\r\n"
                "Accept: */*\r\n\r\n",
        "curl-port": "GET /index.html?q=1 HTTP/1.1\r\nHost: localhost:8080\r\n"
                     "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
        "browser": "GET /static/app.js HTTP/1.1\r\nHost: www.Example.com\r\n"
                   "Connection: keep-alive\r\nsec-ch-ua-platform: \"Linux\"\r\n"
                   "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n"
                   "Accept: */*\r\nReferer: https://www.example.com/\r\n"
                   "Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
                   "Cookie: a=b; c=d\r\n\r\n",
        "post": "POST /api/v1/items HTTP/1.1\r\nContent-Type: application/json\r\n"
                "Content-Length: 13\r\nhost:api.example\r\n\r\n{\"name\":\"x\"}\n",
        "host-late": "GET / HTTP/1.1\r\nX-Forwarded-Host: other.example\r\nHostname: x\r\n"
                     "HOST: \t late.example. \t\r\n\r\n",
        "ipv6": "GET / HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n",
        "http10-no-host": "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n",
        "connect": "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "options": "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "incomplete": "GET / HTTP/1.1\r\nHost: exam",
        "bad-version": "GET / HTTP/2.0\r\nHost: example.com\r\n\r\n",
        "ssh": "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
    }
    for name, s in seeds.items():
        write("fuzz-peek-http", name, s)

    # At the 16 KiB cap (PEEK_MAX): a Host line that ends exactly there, and a request whose
    # headers go on past it.
    start = "GET / HTTP/1.1\r\nUser-Agent: seed\r\n"
    host = "Host: edge.example\r\n"
    pad = 16384 - len(start) - len(host) - len("X-Pad: \r\n")
    write("fuzz-peek-http", "host-at-cap", start + "X-Pad: " + "p" * pad + "\r\n" + host)
    write("fuzz-peek-http", "oversized", start + "X-Pad: " + "p" * 16400 + "\r\nHost: a\r\n\r\n")


def capture(client):
    """Run client against a local listener; return the first record(s) it sends."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    out = {}

    def serve():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        c.settimeout(5)
        data = b""
        try:
            while True:
                if len(data) >= 5:
                    need = 5 + struct.unpack(">H", data[3:5])[0]
                    if len(data) >= need:
                        data = data[:need]
                        break
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        out["data"] = data
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        subprocess.run([a.replace("PORT", str(port)) for a in client], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        pass
    t.join()
    srv.close()
    return out.get("data", b"")


def fragment(rec, size):
    """The handshake of one record split into records of at most size bytes."""
    hs = rec[5:]
    out = b""
    for i in range(0, len(hs), size):
        part = hs[i:i + size]
        out += rec[:3] + struct.pack(">H", len(part)) + part
    return out


def pad_hello(rec, hs_len, record_max=16384):
    """The ClientHello in rec with a padding extension that makes its handshake hs_len bytes."""
    body = rec[9:]
    off = 2 + 32
    off += 1 + body[off]
    off += 2 + struct.unpack(">H", body[off:off + 2])[0]
    off += 1 + body[off]
    exts = body[off + 2:]
    n = hs_len - 4 - off - 2 - len(exts) - 4
    exts += struct.pack(">HH", 21, n) + bytes(n)
    body = body[:off] + struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    out = b""
    for i in range(0, len(hs), record_max):
        part = hs[i:i + record_max]
        out += rec[:3] + struct.pack(">H", len(part)) + part
    return out


def tls():
    clients = {
        "openssl-tls13": ["openssl", "s_client", "-connect", "127.0.0.1:PORT",
                          "-servername", "caddy.example.com", "-tls1_3"],
        "openssl-tls12": ["openssl", "s_client", "-connect", "127.0.0.1:PORT",
                          "-servername", "WWW.Example.COM", "-tls1_2"],
        "openssl-no-sni": ["openssl", "s_client", "-connect", "127.0.0.1:PORT",
                           "-noservername"],
        "curl": ["curl", "-sk", "--max-time", "5", "--resolve",
                 "api.example.org:PORT:127.0.0.1", "https://api.example.org:PORT/"],
    }
    got = {}
    for name, cmd in clients.items():
        data = capture(cmd)
        if len(data) > 9 and data[0] == 22:
            write("fuzz-peek-tls", name, data)
            got[name] = data
        else:
            print("make-seeds: no ClientHello from", name)
    if "openssl-tls13" in got:
        write("fuzz-peek-tls", "openssl-tls13-fragmented-100", fragment(got["openssl-tls13"], 100))
        write("fuzz-peek-tls", "openssl-tls13-fragmented-3", fragment(got["openssl-tls13"], 3))
        write("fuzz-peek-tls", "openssl-tls13-truncated", got["openssl-tls13"][:150])
    if "curl" in got:
        write("fuzz-peek-tls", "curl-fragmented-200", fragment(got["curl"], 200))
        # Two records that just fit in PEEK_MAX, and a ClientHello bigger than PEEK_MAX.
        write("fuzz-peek-tls", "curl-padded-fits", pad_hello(got["curl"], 16374, 16000))
        write("fuzz-peek-tls", "curl-padded-oversized", pad_hello(got["curl"], 17000))


def proxy():
    v4a, v4b = bytes([192, 0, 2, 1]) + bytes(12), bytes([198, 51, 100, 7]) + bytes(12)
    v6a = bytes.fromhex("20010db8000000000000000000000001")
    v6b = bytes.fromhex("fe800000000000000211223344556677")
    v6max = bytes.fromhex("ffffeeeeddddccccbbbbaaaa99998888")
    tail = bytes(8)

    def tup(ver, sk, dk, sa, da, sp, dp, size):
        return bytes([ver, sk, dk]) + sa + da + struct.pack(">HHH", sp, dp, size) + tail

    for v, vb in (("v1", 0), ("v2", 1)):
        write("fuzz-proxy-header", f"{v}-tcp4", tup(vb, 0, 0, v4a, v4b, 51234, 443, 108))
        write("fuzz-proxy-header", f"{v}-tcp6", tup(vb, 1, 1, v6a, v6b, 1, 65535, 108))
        write("fuzz-proxy-header", f"{v}-tcp6-longest",
              tup(vb, 1, 1, v6max, v6max, 65535, 65535, 108))
        write("fuzz-proxy-header", f"{v}-mapped-to-tcp4", tup(vb, 2, 0, v4a, v4b, 80, 8080, 108))
        write("fuzz-proxy-header", f"{v}-unix", tup(vb, 3, 3, b"/run/a.sock\0\0\0\0\0",
                                                    bytes(16), 0, 0, 108))
        write("fuzz-proxy-header", f"{v}-mixed-families", tup(vb, 0, 1, v4a, v6a, 1, 2, 108))
        write("fuzz-proxy-header", f"{v}-unspec", tup(vb, 4, 5, v4a, v4b, 1, 2, 108))
    # Exact fits and one byte short: v1 TCP6 at its longest is 104 bytes, v2 TCP6 52, v2 TCP4 28.
    write("fuzz-proxy-header", "v1-exact-fit", tup(0, 1, 1, v6max, v6max, 65535, 65535, 104))
    write("fuzz-proxy-header", "v1-one-short", tup(0, 1, 1, v6max, v6max, 65535, 65535, 103))
    write("fuzz-proxy-header", "v2-exact-fit", tup(1, 1, 1, v6a, v6b, 1, 2, 52))
    write("fuzz-proxy-header", "v2-tcp4-one-short", tup(1, 0, 0, v4a, v4b, 1, 2, 27))
    write("fuzz-proxy-header", "v2-local-exact", tup(1, 3, 3, bytes(16), bytes(16), 0, 0, 16))
    write("fuzz-proxy-header", "bad-version", tup(0xf3, 0, 0, v4a, v4b, 1, 2, 108))


if __name__ == "__main__":
    address()
    config()
    http()
    tls()
    proxy()
