#!/usr/bin/env python3
"""Fault injection for bk-mysql-agent's binlog stream (tests only).

Forwards connections from a Unix socket to the real MariaDB server's Unix
socket, unchanged.  While the file ARMED exists, the first binlog event
packet of the kind ARMED names is forwarded, then both connections are
closed:

  fde   a file's own format description (the event at offset 4 of a file,
        not the one the server makes up on a resume): the agent has the
        file's start but not the GTID list that follows it;
  stop  a STOP event (a clean shutdown ends the file with it): the agent
        has the file to its end, but nothing of the next one.

When that happens ARMED is removed, and CUT (the connection count) and
HOLD are written.  While HOLD exists, a new connection is closed at once,
so the test can change the server (purge binlogs) or stop the agent before
the agent is back; the test removes HOLD.

usage: binlog_cut_proxy.py LISTEN_SOCKET SERVER_SOCKET ARMED CUT HOLD
"""
import os
import socket
import sys
import threading

STOP_EVENT = 3
FORMAT_DESCRIPTION_EVENT = 15
BINLOG_MAGIC_LEN = 4


def event_of(payload):
    """(type, event_size, next_pos) of a replication event packet, or None.

    The payload is the OK byte and the event: timestamp (4 bytes), type (1),
    server_id (4), event_size (4), log_pos (4, the next event's offset),
    flags (2).
    """
    if len(payload) < 20 or payload[0] != 0:
        return None
    size = int.from_bytes(payload[10:14], "little")
    if size != len(payload) - 1:
        return None
    return payload[5], size, int.from_bytes(payload[14:18], "little")


def cuts_here(kind, payload):
    event = event_of(payload)
    if event is None:
        return False
    etype, size, next_pos = event
    if kind == "fde":
        return etype == FORMAT_DESCRIPTION_EVENT and next_pos == BINLOG_MAGIC_LEN + size
    if kind == "stop":
        return etype == STOP_EVENT and next_pos != 0
    return False


def armed_kind(armed):
    try:
        with open(armed) as f:
            return f.read().strip() or "fde"
    except OSError:
        return None


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


def server_to_client(server, client, paths, count):
    armed, cut, hold = paths
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
                kind = armed_kind(armed)
                if kind is not None and cuts_here(kind, packet[4:]):
                    open(hold, "w").close()
                    os.unlink(armed)
                    with open(cut, "w") as out:
                        out.write("%d\n" % count)
                    close_both(server, client)
                    return
    except OSError:
        pass
    close_both(server, client)


def serve(conn, server_path, paths, count):
    if os.path.exists(paths[2]):
        conn.close()
        return
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.connect(server_path)
    except OSError:
        conn.close()
        return
    threading.Thread(target=client_to_server, args=(conn, server), daemon=True).start()
    server_to_client(server, conn, paths, count)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    listen_path, server_path = sys.argv[1:3]
    paths = tuple(sys.argv[3:6])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(listen_path)
    listener.listen(16)
    count = 0
    while True:
        conn, _ = listener.accept()
        count += 1
        threading.Thread(
            target=serve, args=(conn, server_path, paths, count), daemon=True
        ).start()


if __name__ == "__main__":
    main()
