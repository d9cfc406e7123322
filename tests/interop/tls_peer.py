#!/usr/bin/env python3
"""The Python side of tests/interop_python_tls.rs: protobuf_peer.py's length-prefixed BytesValue
messages (google.protobuf's serialize_length_prefixed / parse_length_prefixed, Varint framing)
over TLS from the standard library's ssl module.

  tls_peer.py send HOST PORT N --ca CA [--server-name NAME] [--cert C --key K] [--probe S]
      connect with TLS (the server's certificate must chain to CA and carry NAME, default
      HOST), with the client certificate C if given; write N messages; print "sent N DIGEST".
      With --probe, then wait up to S seconds for the server to close or refuse the
      connection: print "refused REASON" (an alert, e.g. a client certificate was required)
      or "open".
  tls_peer.py recv --cert C --key K [--client-ca CA] [--tickets T]
      listen on 127.0.0.1:0 with TLS, print "port P", take one connection (with --client-ca,
      only a client certificate that chains to CA is accepted), read to EOF, print "received N
      DIGEST"; print "refused REASON" instead if the handshake fails. T: TLS 1.3 session
      tickets sent after the handshake (default 0).

Messages and DIGEST are those of protobuf_peer.py. Every wait is bounded (--timeout, 20 s).
"""
import argparse
import os
import socket
import ssl
import sys

from google.protobuf import proto
from google.protobuf import wrappers_pb2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from protobuf_peer import chain, value  # noqa: E402


def ignore_unexpected_eof(ctx):
    # buffstreams closes a TLS connection without close_notify (like a plain TCP close); a
    # cut inside a message still shows as a short read, caught by the count and the digest.
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


def close_notify(tls):
    """Reads what the server sent meanwhile (its session tickets), sends close_notify without
    waiting for the peer's, then closes the socket.

    Closing a socket whose received bytes were never read makes Linux reset the connection,
    dropping what this side's kernel had not sent yet: the tickets a TLS 1.3 server sends after
    the handshake are such bytes for a client that only writes.
    """
    try:
        tls.setblocking(False)
        while tls.recv(65536):
            pass
    except (ssl.SSLError, OSError):
        pass
    try:
        tls.unwrap()
    except (ssl.SSLError, OSError):
        pass
    tls.close()


def send(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    ignore_unexpected_eof(ctx)
    raw = socket.create_connection((args.host, args.port), timeout=args.timeout)
    tls = ctx.wrap_socket(raw, server_hostname=args.server_name or args.host)
    acc = 0
    try:
        with tls.makefile("wb", buffering=65536) as out:
            for i in range(args.n):
                v = value(i)
                acc = chain(acc, v)
                proto.serialize_length_prefixed(wrappers_pb2.BytesValue(value=v), out)
            out.flush()
    except (ssl.SSLError, OSError) as err:
        # Under TLS 1.3 a server's refusal of the client certificate can arrive while writing.
        print(f"refused {err}", flush=True)
        tls.close()
        return
    print(f"sent {args.n} {acc}", flush=True)
    if args.probe is not None:
        tls.settimeout(args.probe)
        try:
            data = tls.recv(1)
            print("refused closed" if not data else "open", flush=True)
        except socket.timeout:
            print("open", flush=True)
        except (ssl.SSLError, OSError) as err:
            print(f"refused {err}", flush=True)
    close_notify(tls)


def recv(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    # TLS 1.3 session tickets (OpenSSL sends 2 by default) reach a buffstreams writer after its
    # handshake; one that closes before reading them has its connection reset (see
    # tests/interop_python_tls.rs), so the default here is none.
    ctx.num_tickets = args.tickets
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=args.client_ca)
    ignore_unexpected_eof(ctx)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(args.timeout)
        print(f"port {listener.getsockname()[1]}", flush=True)
        raw, _ = listener.accept()
        raw.settimeout(args.timeout)
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as err:
            raw.close()
            print(f"refused {err}", flush=True)
            return
        with conn, conn.makefile("rb", buffering=65536) as inp:
            n, acc = 0, 0
            while True:
                msg = proto.parse_length_prefixed(wrappers_pb2.BytesValue, inp)
                if msg is None:
                    break
                acc = chain(acc, msg.value)
                n += 1
    print(f"received {n} {acc}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=20.0)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("n", type=int)
    s.add_argument("--ca", required=True)
    s.add_argument("--server-name")
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--probe", type=float)
    r = sub.add_parser("recv")
    r.add_argument("--cert", required=True)
    r.add_argument("--key", required=True)
    r.add_argument("--client-ca")
    r.add_argument("--tickets", type=int, default=0)
    args = parser.parse_args()
    {"send": send, "recv": recv}[args.command](args)


if __name__ == "__main__":
    main()
