#!/usr/bin/env python3
"""Fault injection in front of the S3 endpoint (tests only).

An HTTP proxy on a loopback port the kernel picks (written to PORT_FILE)
that forwards each request to the store, one request per connection, and
fails as a store or the network between may:

  - with probability P503, answers 503 SlowDown without forwarding;
  - with probability PLOST, forwards the request (it takes effect) and
    closes the connection without the answer (a reset, a timeout).

Requests are signed for the proxy's host and port, which it forwards
unchanged.  Each fault is logged to LOG, one line: "503" or "LOST", the
request line, and for LOST the store's status line.

The rolls come from SEED (default: a random one, logged first to LOG as
"SEED N"), one per connection in the order they are accepted, so that a run
can be repeated with the same sequence of faults (the requests' order still
depends on timing).

usage: s3_fault_proxy.py STORE_PORT PORT_FILE P503 PLOST LOG [SEED]
"""
import os
import random
import socket
import sys
import threading


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    length = 0
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        if name in (b"connection", b"keep-alive"):
            continue
        headers.append(line)
    while len(body) < length:
        chunk = conn.recv(1 << 20)
        if not chunk:
            return None
        body += chunk
    return lines[0], headers, body


def serve(conn, roll, store, p503, plost, log, lock):
    try:
        request = read_request(conn)
        if request is None:
            return
        line, headers, body = request
        if roll < p503:
            with lock:
                log.write("503 %s\n" % line.decode())
            xml = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>'
                   b"SlowDown</Code><Message>injected</Message></Error>")
            conn.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: "
                         b"application/xml\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % len(xml) + xml)
            return
        upstream = socket.create_connection(store)
        upstream.sendall(line + b"\r\n" + b"\r\n".join(headers) +
                         b"\r\nConnection: close\r\n\r\n" + body)
        answer = b""
        while True:
            chunk = upstream.recv(1 << 20)
            if not chunk:
                break
            answer += chunk
        upstream.close()
        if roll < p503 + plost:
            with lock:
                log.write("LOST %s -> %s\n" %
                          (line.decode(), answer.split(b"\r\n", 1)[0].decode()))
            return
        conn.sendall(answer)
    except OSError as error:
        with lock:
            log.write("EXC %r\n" % error)
    finally:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()


def main():
    store = ("127.0.0.1", int(sys.argv[1]))
    p503 = float(sys.argv[3])
    plost = float(sys.argv[4])
    log = open(sys.argv[5], "a", buffering=1)
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else random.randrange(1 << 31)
    rolls = random.Random(seed)
    log.write("SEED %d\n" % seed)
    lock = threading.Lock()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    with open(sys.argv[2] + ".tmp", "w") as port_file:
        port_file.write(str(listener.getsockname()[1]))
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve,
                         args=(conn, rolls.random(), store, p503, plost, log,
                               lock),
                         daemon=True).start()


if __name__ == "__main__":
    main()
