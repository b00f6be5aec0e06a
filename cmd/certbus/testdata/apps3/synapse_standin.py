#!/usr/bin/python3
"""Stand-in for Matrix Synapse's TLS listener in certbus's tests.

Synapse is not in Debian bookworm, so the matrix-synapse app type is tested
against this instead: it serves TLS on 127.0.0.1:PORT with the certificate
chain and key files Synapse reads (homeserver.tls.crt, homeserver.tls.key)
and, as Synapse does since 0.99, loads them again on SIGHUP, keeping the
pair it has when the new one does not load. It speaks no Matrix: a TLS
handshake is all certbus's verification needs.

usage: synapse_standin.py CERT KEY PORT
"""
import signal
import socket
import ssl
import sys
import threading

cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])


def load():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


context = load()


def reload(signum, frame):
    global context
    try:
        context = load()
        print("SIGHUP: certificate reloaded", flush=True)
    except (OSError, ssl.SSLError) as e:
        print("SIGHUP: reload failed, keeping the old certificate:", e, flush=True)


def serve(conn, ctx):
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # until the client closes
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


signal.signal(signal.SIGHUP, reload)
server = socket.create_server(("127.0.0.1", port))
print("listening on 127.0.0.1:%d" % port, flush=True)
while True:
    conn, _ = server.accept()  # retried by Python after a signal handler runs
    conn.settimeout(10)
    threading.Thread(target=serve, args=(conn, context), daemon=True).start()
