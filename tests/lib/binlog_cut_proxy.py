#!/usr/bin/env python3
"""Fault injection for bk-mysql-agent's binlog stream (tests only).

Forwards connections from a Unix socket to the real MariaDB server's Unix
socket, unchanged.  While the file ARMED exists, the first binlog event
packet that is a file's own format description (the event at offset 4 of a
file, not the one the server makes up on a resume) is forwarded and then
both connections are closed: the agent has the file's start but not the
GTID list that follows it.  ARMED is removed and CUT written (the
connection count) when that happens.  While the file HOLD exists, a new
connection is accepted but not forwarded: it waits, so the test can change
the server (purge binlogs) before the agent is back.

usage: binlog_cut_proxy.py LISTEN_SOCKET SERVER_SOCKET ARMED CUT HOLD
"""
import os
import socket
import sys
import threading
import time

FORMAT_DESCRIPTION_EVENT = 15
BINLOG_MAGIC_LEN = 4


def file_start_fde(payload):
    """A replication event packet holding a file's own format description.

    The payload is the OK byte and the event: timestamp (4 bytes), type (1),
    server_id (4), event_size (4), log_pos (4, the next event's offset),
    flags (2).
    """
    if len(payload) < 20 or payload[0] != 0:
        return False
    if payload[5] != FORMAT_DESCRIPTION_EVENT:
        return False
    size = int.from_bytes(payload[10:14], "little")
    next_pos = int.from_bytes(payload[14:18], "little")
    return size == len(payload) - 1 and next_pos == BINLOG_MAGIC_LEN + size


def close_both(a, b):
    for sock in (a, b):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def client_to_server(client, server):
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            server.sendall(data)
    except OSError:
        pass
    close_both(client, server)


def server_to_client(server, client, armed, cut, count):
    buf = b""
    try:
        while True:
            data = server.recv(65536)
            if not data:
                break
            buf += data
            while len(buf) >= 4:
                length = int.from_bytes(buf[0:3], "little")
                if len(buf) < 4 + length:
                    break
                packet, buf = buf[: 4 + length], buf[4 + length :]
                client.sendall(packet)
                if os.path.exists(armed) and file_start_fde(packet[4:]):
                    os.unlink(armed)
                    with open(cut, "w") as out:
                        out.write("%d\n" % count)
                    close_both(server, client)
                    return
    except OSError:
        pass
    close_both(server, client)


def serve(conn, server_path, armed, cut, hold, count):
    while os.path.exists(hold):
        time.sleep(0.05)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.connect(server_path)
    except OSError:
        conn.close()
        return
    threading.Thread(target=client_to_server, args=(conn, server), daemon=True).start()
    server_to_client(server, conn, armed, cut, count)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    listen_path, server_path, armed, cut, hold = sys.argv[1:]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(listen_path)
    listener.listen(16)
    count = 0
    while True:
        conn, _ = listener.accept()
        count += 1
        threading.Thread(
            target=serve,
            args=(conn, server_path, armed, cut, hold, count),
            daemon=True,
        ).start()


if __name__ == "__main__":
    main()
