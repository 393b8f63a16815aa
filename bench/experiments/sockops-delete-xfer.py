# Experiment helper (sockops-delete.sh): 64 MiB over one loopback TCP connection.
import socket, threading
N = 64 << 20
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
got = 0
def rx():
    global got
    c, _ = srv.accept()
    while True:
        b = c.recv(1 << 20)
        if not b: break
        got += len(b)
t = threading.Thread(target=rx); t.start()
cl = socket.create_connection(("127.0.0.1", port))
buf = b"x" * (1 << 20)
for _ in range(N >> 20): cl.sendall(buf)
cl.close(); t.join()
print("received", got)
