#!/usr/bin/env python3
"""The Python protobuf side of tests/interop_python.rs: length-prefixed BytesValue messages
written with google.protobuf's serialize_length_prefixed and read with parse_length_prefixed.

  protobuf_peer.py send HOST PORT N   write N messages, print "sent N DIGEST"
  protobuf_peer.py recv               listen on 127.0.0.1:0, print "port P", take one
                                      connection, read to EOF, print "received N DIGEST"

Message i holds value(i); DIGEST chains FNV-1a 64 of every value in order (the Rust test
computes the same).
"""
import socket
import sys

from google.protobuf import proto
from google.protobuf import wrappers_pb2

MASK = (1 << 64) - 1


def value(i):
    return bytes((i * 31 + k) % 256 for k in range((i * 7) % 300))


def fnv(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def chain(acc, data):
    return (acc * 0x100000001B3 + fnv(data)) & MASK


def send(host, port, n):
    with socket.create_connection((host, port)) as s, s.makefile("wb", buffering=65536) as out:
        acc = 0
        for i in range(n):
            v = value(i)
            acc = chain(acc, v)
            proto.serialize_length_prefixed(wrappers_pb2.BytesValue(value=v), out)
        out.flush()
    print(f"sent {n} {acc}", flush=True)


def recv():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        print(f"port {listener.getsockname()[1]}", flush=True)
        conn, _ = listener.accept()
        with conn, conn.makefile("rb", buffering=65536) as inp:
            n, acc = 0, 0
            while True:
                msg = proto.parse_length_prefixed(wrappers_pb2.BytesValue, inp)
                if msg is None:
                    break
                acc = chain(acc, msg.value)
                n += 1
    print(f"received {n} {acc}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["send"]:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1:2] == ["recv"]:
        recv()
    else:
        sys.exit(__doc__)
