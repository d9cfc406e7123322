#!/usr/bin/env python3
"""An independent peer for buffstreams' acknowledged-delivery protocol, version 1, written
from docs/acked-protocol.md alone (standard library only). Used by
tests/interop_python_acked.rs; runs on its own too.

  acked_peer.py listen PORT_FILE [--framing F] [--max-sessions N] [--session-ttl S]
                [--cut-after K] [--echo] [--expect N] [--max-time S] [--port P]
      An acknowledged listener on 127.0.0.1:P (default 0: any free port; a fixed P lets a
      restarted listener take over the address, as a new process that knows no session). Writes its port to PORT_FILE (atomically; "-"
      prints "PORT P" on stdout instead), takes connections (a thread each), and prints every
      message it delivers as a line

          MSG <session-hex> <seq> <dup 0|1> <payload-hex>

      dup is 1 when the message is flagged as a possible duplicate (see "Flags" below). Acks
      (tag 1) after each receive that delivered something, and whatever is pending after
      100 ms without input.
        --cut-after K   reset (RST) each connection once it has delivered K messages, having
                        acknowledged only up to its (K/2)-th: the writer must re-send the rest.
        --echo          write each delivered payload back as a reply (tag 0).
        --max-ack M     never acknowledge past message M (reply and acks): a writer killed
                        or cut over to another listener re-sends from M + 1.
        --literal-flags flag exactly as the spec's text says (see "Flags").
        --expect N      once one session has N distinct messages delivered, acknowledge
                        everything, wait (up to --grace seconds) for the writers to close, and
                        exit.
      Ends on SIGTERM too (or after --max-time, exit status 1). Prints last
          DONE delivered=<messages delivered> duplicates_dropped=<frames dropped as delivered>

  acked_peer.py send HOST:PORT --count N --size S [--framing F] [--cut-every K]
                [--session HEX] [--expect-replies] [--max-unacked M] [--timeout S]
      An acknowledged writer: session id random (or HEX, 32 hex digits), N messages whose
      payload is the 8-byte big-endian sequence number then filler up to S bytes (S >= 8).
      Keeps every message until acknowledged; after a lost connection it reconnects and sends
      the hello first_seq = last acked + 1, first_new = first message never sent, then every
      unacknowledged message again. With --cut-every K it resets (RST) its own connection after
      each K new messages, without waiting for acks. Waits until all N are acknowledged
      (--timeout, default 20 s, bounds every stretch without progress and the final wait),
      closes, and prints
          DONE sent=<N> resent=<messages sent again> acked=<last acked>
      With --reset-resumed K, the first connection that re-sends (first_seq < first_new)
      carries K frames and is reset once the reply came (the listener holds the session).
      With --max-unacked M, at most M messages are out unacknowledged at any time (the
      writer waits for acks). With --expect-replies, prints each reply (tag 0) as "REPLY <payload-hex>" and also waits
      for N of them. On a protocol violation (bad magic or version in the reply, an ack going
      backwards or beyond what was sent, an unknown tag, a short ack) it prints
      "ERROR <reason>" (stdout and stderr) and exits 1; also on a timeout.

Flags. The spec flags, for an unknown session, the messages in [first_seq, first_new) of
that hello, and for a known session none. That misses a case: a listener restarted while a
writer resumes learns the session from a first connection that breaks before it delivered
everything the old process may have had; on the next connection the session is known, and
the rest of [first_seq, first_new) of the first hello is delivered unflagged, twice in all.
This listener remembers, per session entry, the first_new of the hello that created it and
flags every message below it, on every connection (the same as the spec on the creating
connection; --literal-flags restores the spec's text).

Framings (--framing, same on both ends): u32be (default), u32le, u64be, u64le, varint (LEB128
unsigned), buffstreams (Go BuffStreams 2.x header; its width follows --max-size). --max-size:
the largest message accepted (default 8 MiB, buffstreams' default). Every blocking call is
bounded by a timeout.
"""
import argparse
import collections
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

MAGIC = b"\xff\xff\xff\xffBSAK"
VERSION = 1
# magic, version, flags, reserved, session id, first_seq, first_new: 44 bytes
HELLO = struct.Struct(">8sBBH16sQQ")
# magic, version, status, reserved, delivered: 24 bytes
REPLY = struct.Struct(">8sBB6sQ")
assert HELLO.size == 44 and REPLY.size == 24
TAG_REPLY = 0
TAG_ACK = 1
U64 = struct.Struct(">Q")
MAX_U64 = (1 << 64) - 1
DEFAULT_MAX_SIZE = 8 << 20


class ProtocolError(Exception):
    """The peer broke the protocol (or the framing): the connection must close."""


class ConnLost(Exception):
    """The connection ended (EOF, reset, timeout): a writer reconnects."""


def log(*parts):
    print("acked_peer:", *parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Framings


def varint_encode(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_decode(buf, pos, limit):
    """(value, new_pos) or None if buf ends first; ProtocolError past `limit` bytes or u64."""
    value = 0
    shift = 0
    for i in range(limit):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        if value > MAX_U64:
            raise ProtocolError("varint length overflows a u64")
        if b < 0x80:
            return value, pos + i + 1
        shift += 7
    raise ProtocolError(f"length varint does not end within {limit} bytes")


class Framing:
    FIXED = {
        "u32be": struct.Struct(">I"),
        "u32le": struct.Struct("<I"),
        "u64be": struct.Struct(">Q"),
        "u64le": struct.Struct("<Q"),
    }
    NAMES = list(FIXED) + ["varint", "buffstreams"]

    def __init__(self, name, max_size):
        if name not in self.NAMES:
            raise SystemExit(f"unknown framing {name!r} (one of {', '.join(self.NAMES)})")
        self.name = name
        self.max_size = max_size
        self.fixed = self.FIXED.get(name)
        if name == "buffstreams":
            m = max_size or 4096
            self.header_len = (m.bit_length() + 7) // 8 + 1

    def encode(self, payload):
        n = len(payload)
        if n > self.max_size:
            raise ValueError(f"message of {n} bytes over the maximum {self.max_size}")
        if self.fixed is not None:
            return self.fixed.pack(n) + payload
        if self.name == "varint":
            return varint_encode(n) + payload
        head = varint_encode(2 * n)  # zigzag of a non-negative length
        return head + b"\0" * (self.header_len - len(head)) + payload

    def decode(self, buf, pos):
        """The frame at buf[pos:] as (payload, next_pos), or None if incomplete."""
        if self.fixed is not None:
            end = pos + self.fixed.size
            if end > len(buf):
                return None
            (n,) = self.fixed.unpack_from(buf, pos)
        elif self.name == "varint":
            got = varint_decode(buf, pos, 10)
            if got is None:
                return None
            n, end = got
        else:
            h = self.header_len
            got = varint_decode(buf, pos, min(h, 10))
            if got is None:
                return None
            z, vend = got
            n = (z >> 1) ^ -(z & 1)
            if n < 0:
                raise ProtocolError(f"negative length {n}")
            end = pos + h
            if any(buf[vend:min(end, len(buf))]):
                raise ProtocolError("non-zero header padding")
            if end > len(buf):
                return None
        if n > self.max_size:
            raise ProtocolError(f"frame of {n} bytes over the maximum {self.max_size}")
        if end + n > len(buf):
            return None
        return bytes(buf[end:end + n]), end + n


def abort(sock):
    """Closes `sock` with a reset (SO_LINGER 0): unsent data is dropped, the peer gets RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def close_gently(sock, timeout):
    """Half-closes, reads until the peer closes too (at most `timeout`), then closes: what
    was sent last (an ack) is not lost to a reset for unread input."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if r and not sock.recv(65536):
                break
    except OSError:
        pass
    sock.close()


# ---------------------------------------------------------------------------------------------
# Listener


class Session:
    def __init__(self, last, flag_before):
        self.last = last  # the last message delivered
        # Messages before this one may have reached an earlier listener process: the
        # first_new of the hello that made the entry (see "Flags" in the module's docstring).
        self.flag_before = flag_before
        self.owner = None  # the id of the connection that owns it
        self.released = time.monotonic()


class ListenerState:
    def __init__(self, args, framing):
        self.args = args
        self.framing = framing
        self.lock = threading.Lock()
        self.sessions = {}  # session id -> Session
        self.distinct = collections.defaultdict(set)  # session id -> seqs ever delivered
        self.delivered = 0
        self.dropped = 0
        self.next_conn = 0
        self.done = threading.Event()  # --expect reached
        self.stop = threading.Event()  # SIGTERM, grace over, or --max-time

    def take_session(self, sid, first_seq, first_new, conn_id):
        """Applies the hello's session rules; returns (session, status, delivered)."""
        now = time.monotonic()
        with self.lock:
            ttl = self.args.session_ttl
            for key in [k for k, s in self.sessions.items()
                        if s.owner is None and now - s.released > ttl]:
                del self.sessions[key]
            s = self.sessions.get(sid)
            if s is not None:
                if first_seq > s.last + 1:
                    raise ProtocolError(
                        f"bad hello: gap, first_seq {first_seq} after delivered {s.last}")
                s.owner = conn_id
                return s, 1, self.ackable(s.last)
            if len(self.sessions) >= self.args.max_sessions:
                free = [(s.released, k) for k, s in self.sessions.items() if s.owner is None]
                if not free:
                    raise ProtocolError("session table full")
                del self.sessions[min(free)[1]]
            s = Session(first_seq - 1, first_new)
            s.owner = conn_id
            self.sessions[sid] = s
            return s, 0, 0

    def ackable(self, last):
        """What may be acknowledged of `last` (--max-ack)."""
        if self.args.max_ack is not None:
            return min(last, self.args.max_ack)
        return last

    def release(self, session, conn_id):
        with self.lock:
            if session.owner == conn_id:
                session.owner = None
                session.released = time.monotonic()


def recv_exact(sock, n, timeout):
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConnLost("timed out")
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        data = sock.recv(n - len(buf))
        if not data:
            raise ConnLost(f"closed after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def serve(state, sock, conn_id):
    args, framing = state.args, state.framing
    session = None
    try:
        sock.settimeout(args.io_timeout)  # bounds sendall; reads wait in select
        hello = recv_exact(sock, HELLO.size, args.io_timeout)
        magic, version, flags, _reserved, sid, first_seq, first_new = HELLO.unpack(hello)
        if magic != MAGIC:
            raise ProtocolError("not an acknowledged peer (bad magic)")
        if version != VERSION or flags != 0:
            raise ProtocolError(f"unsupported version {version}, flags {flags}")
        if first_seq == 0 or first_new < first_seq:
            raise ProtocolError(f"bad hello: first_seq {first_seq}, first_new {first_new}")
        session, status, delivered = state.take_session(sid, first_seq, first_new, conn_id)
        sock.sendall(REPLY.pack(MAGIC, VERSION, status, b"\0" * 6, delivered))
        hexsid = sid.hex()
        known = status == 1
        next_seq = first_seq
        acked = delivered  # what this connection acknowledged so far (the reply counts)
        on_conn = 0  # messages delivered on this connection
        cap = None  # --cut-after: acks stop at this message of the connection
        buf = bytearray()
        last_input = time.monotonic()

        def send_ack(value):
            nonlocal acked
            value = state.ackable(value)
            if value > acked:
                sock.sendall(framing.encode(bytes([TAG_ACK]) + U64.pack(value)))
                acked = value

        while True:
            if state.stop.is_set():
                send_ack(session.last)
                close_gently(sock, 0.5)
                return
            r, _, _ = select.select([sock], [], [], 0.05)
            now = time.monotonic()
            if not r:
                if now - last_input >= 0.1:
                    with state.lock:
                        last = session.last if session.owner == conn_id else acked
                    send_ack(last)
                if now - last_input > args.idle_timeout:
                    raise ConnLost(f"idle for {args.idle_timeout} s")
                continue
            data = sock.recv(65536)
            if not data:
                send_ack(session.last)
                close_gently(sock, 0.5)
                return
            last_input = now
            buf += data
            pos = 0
            delivered_any = False
            cut = False
            while True:
                frame = framing.decode(buf, pos)
                if frame is None:
                    break
                payload, pos = frame
                seq = next_seq
                next_seq += 1
                with state.lock:
                    if session.owner != conn_id:
                        raise ConnLost("session taken over by a newer connection")
                    if seq <= session.last:
                        state.dropped += 1
                        continue
                    assert seq == session.last + 1, (seq, session.last)
                    if args.literal_flags:
                        dup = 0 if known or seq >= first_new else 1
                    else:
                        dup = 1 if seq < session.flag_before else 0
                    session.last = seq
                    state.delivered += 1
                    seen = state.distinct[sid]
                    seen.add(seq)
                    sys.stdout.write(f"MSG {hexsid} {seq} {dup} {payload.hex()}\n")
                    sys.stdout.flush()
                    if args.expect is not None and len(seen) >= args.expect:
                        state.done.set()
                delivered_any = True
                on_conn += 1
                if args.echo:
                    sock.sendall(framing.encode(bytes([TAG_REPLY]) + payload))
                if args.cut_after:
                    if on_conn == args.cut_after // 2:
                        cap = seq
                    if on_conn >= args.cut_after and not state.done.is_set():
                        cut = True
                        break
            del buf[:pos]
            if cut:
                log(f"conn {conn_id}: cut after {on_conn} messages (last {seq}, acked {acked})")
                abort(sock)
                return
            if delivered_any:
                with state.lock:
                    last = session.last
                if cap is not None and not state.done.is_set():
                    last = min(last, cap)
                send_ack(last)
    except ProtocolError as err:
        log(f"conn {conn_id}: protocol error: {err}")
        abort(sock)
    except (ConnLost, OSError, ValueError) as err:
        log(f"conn {conn_id}: {type(err).__name__}: {err}")
        sock.close()
    finally:
        if session is not None:
            state.release(session, conn_id)


def write_port(path, port):
    if path == "-":
        print(f"PORT {port}", flush=True)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def listen(args):
    framing = Framing(args.framing, args.max_size)
    state = ListenerState(args, framing)
    signal.signal(signal.SIGTERM, lambda *_: state.stop.set())
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(128)
    lsock.settimeout(0.1)
    write_port(args.port_file, lsock.getsockname()[1])
    threads = []
    start = time.monotonic()
    timed_out = False
    while not state.stop.is_set() and not state.done.is_set():
        if time.monotonic() - start > args.max_time:
            timed_out = True
            break
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            continue
        except OSError as err:
            log(f"accept: {err}")
            time.sleep(0.05)
            continue
        state.next_conn += 1
        t = threading.Thread(target=serve, args=(state, conn, state.next_conn), daemon=True)
        t.start()
        threads.append(t)
    lsock.close()
    if state.done.is_set():
        # Everything expected was delivered: let the writers get their last acks and close.
        deadline = time.monotonic() + args.grace
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    state.stop.set()
    for t in threads:
        t.join(1.0)
    with state.lock:
        print(f"DONE delivered={state.delivered} duplicates_dropped={state.dropped}",
              flush=True)
    if timed_out:
        log(f"listen: --max-time {args.max_time} s passed")
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Writer


class Violation(Exception):
    """The listener broke the protocol: the writer fails."""


class Writer:
    def __init__(self, args):
        self.args = args
        self.framing = Framing(args.framing, args.max_size)
        if args.session:
            self.sid = bytes.fromhex(args.session)
            if len(self.sid) != 16:
                raise SystemExit("--session takes 32 hex digits (16 bytes)")
        else:
            self.sid = os.urandom(16)
        if args.size < 8:
            raise SystemExit("--size must be at least 8 (the sequence number)")
        host, _, port = args.addr.rpartition(":")
        self.addr = (host.strip("[]") or "127.0.0.1", int(port))
        self.created = 0  # messages made (seqs 1..created)
        self.started = 0  # the last message of which a byte reached the kernel
        self.sent = 0  # the last message of which every byte reached the kernel
        self.acked = 0  # the last acknowledged message
        self.resent = 0
        self.replies = 0
        self.store = collections.deque()  # (seq, frame) not yet acknowledged
        self.progress = time.monotonic()
        self.all_sent_at = None
        self.reset_done = False

    def payload(self, seq):
        return U64.pack(seq) + bytes([seq & 0xFF]) * (self.args.size - 8)

    def finished(self):
        return self.acked >= self.args.count and (
            not self.args.expect_replies or self.replies >= self.args.count)

    def check_deadline(self):
        now = time.monotonic()
        t = self.args.timeout
        if now - self.progress > t:
            raise Violation(f"timed out: no progress for {t} s (acked {self.acked})")
        if self.all_sent_at is not None and now - self.all_sent_at > t:
            raise Violation(f"timed out: {t} s after the last message, acked {self.acked} of "
                            f"{self.args.count}, {self.replies} replies")

    def on_ack(self, value, from_reply):
        if value > self.sent:
            raise Violation(f"bad ack: {value} beyond the last message sent, {self.sent}")
        if value < self.acked:
            if from_reply and value == 0:
                return  # "0: none, or unknown"
            raise Violation(f"bad ack: {value} goes back from {self.acked}")
        if value > self.acked:
            self.acked = value
            self.progress = time.monotonic()
            while self.store and self.store[0][0] <= value:
                self.store.popleft()

    def on_input(self, inbuf, state):
        """Parses what arrived; `state` holds whether the reply was read."""
        pos = 0
        if not state["reply"]:
            if len(inbuf) < REPLY.size:
                return
            magic, version, status, _reserved, delivered = REPLY.unpack_from(inbuf, 0)
            if magic != MAGIC:
                raise Violation(f"not an acknowledged peer: reply starts {bytes(inbuf[:8])!r}")
            if version != VERSION:
                raise Violation(f"unsupported version {version} in the reply")
            if status not in (0, 1):
                raise Violation(f"unknown status {status} in the reply")
            self.on_ack(delivered, True)
            state["reply"] = True
            pos = REPLY.size
        while True:
            try:
                frame = self.framing.decode(inbuf, pos)
            except ProtocolError as err:
                raise Violation(f"bad frame from the listener: {err}") from err
            if frame is None:
                break
            payload, pos = frame
            if not payload:
                raise Violation("bad ack: an empty listener frame")
            tag = payload[0]
            if tag == TAG_ACK:
                if len(payload) != 9:
                    raise Violation(f"bad ack: an ack of {len(payload)} bytes, not 9")
                self.on_ack(U64.unpack_from(payload, 1)[0], False)
            elif tag == TAG_REPLY:
                self.replies += 1
                if self.args.expect_replies:
                    sys.stdout.write(f"REPLY {payload[1:].hex()}\n")
                    sys.stdout.flush()
            else:
                raise Violation(f"bad ack: unknown tag {tag}")
        del inbuf[:pos]

    def connection(self, sock):
        """Runs one connection; returns "done" or "cut"; raises ConnLost or Violation."""
        args = self.args
        first_seq = self.acked + 1
        first_new = self.started + 1
        out = bytearray(HELLO.pack(MAGIC, VERSION, 0, 0, self.sid, first_seq, first_new))
        pending = collections.deque([(0, len(out))])  # (seq or 0 for the hello, bytes left)
        # --reset-resumed K: the first connection that re-sends carries K frames, then is reset.
        reset_after = None
        if args.reset_resumed and first_seq < first_new and not self.reset_done:
            reset_after = min(args.reset_resumed, len(self.store))
        frames_done = 0
        for seq, frame in self.store:
            if reset_after is not None and len(pending) > reset_after:
                break
            out += frame
            pending.append((seq, len(frame)))
            if seq < first_new:
                self.resent += 1
        cut_at = None
        if args.cut_every:
            k = args.cut_every
            cut_at = (first_new + k - 1) // k * k
            if cut_at > args.count:
                cut_at = None
        inbuf = bytearray()
        state = self.conn_state = {"reply": False}
        while True:
            while (reset_after is None and len(out) < (256 << 10) and self.created < args.count
                   and (cut_at is None or self.created < cut_at)
                   and (not args.max_unacked or self.created - self.acked < args.max_unacked)):
                self.created += 1
                frame = self.framing.encode(self.payload(self.created))
                self.store.append((self.created, frame))
                out += frame
                pending.append((self.created, len(frame)))
            if not out and state["reply"] and self.finished():
                return "done"
            if reset_after is not None and frames_done >= reset_after and state["reply"]:
                # The reply proves the listener read the hello (its session entry exists).
                log(f"send: resetting the resumed connection after {frames_done} frames")
                self.reset_done = True
                return "cut"
            r, w, _ = select.select([sock], [sock] if out else [], [], 0.05)
            if w:
                try:
                    n = sock.send(out[:1 << 18])
                except BlockingIOError:
                    n = 0
                except OSError as err:
                    raise ConnLost(f"send: {err}") from err
                if n:
                    self.progress = time.monotonic()
                    del out[:n]
                    while n:
                        seq, left = pending[0]
                        self.started = max(self.started, seq)
                        if n >= left:
                            n -= left
                            pending.popleft()
                            self.sent = max(self.sent, seq)
                            frames_done += seq > 0
                        else:
                            pending[0] = (seq, left - n)
                            n = 0
                    if self.sent >= args.count and self.all_sent_at is None:
                        self.all_sent_at = time.monotonic()
                    if cut_at is not None and self.sent >= cut_at:
                        return "cut"

            if r:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError as err:
                    raise ConnLost(f"recv: {err}") from err
                if data == b"":
                    raise ConnLost("closed by the listener")
                if data:
                    inbuf += data
                    self.on_input(inbuf, state)
            self.check_deadline()

    def run(self):
        delay = 0.0
        while True:
            self.check_deadline()
            if delay:
                time.sleep(delay)
            try:
                sock = socket.create_connection(self.addr, timeout=5)
            except OSError as err:
                log(f"send: connect: {err}")
                delay = min(max(delay * 2, 0.02), 0.5)
                continue
            sock.setblocking(False)
            self.conn_state = {"reply": False}
            try:
                how = self.connection(sock)
            except ConnLost as err:
                log(f"send: connection lost ({err}), acked {self.acked}; reconnecting")
                sock.close()
                # At once after a connection that worked, then backing off.
                if self.conn_state["reply"]:
                    delay = 0.0
                else:
                    delay = min(max(delay * 2, 0.02), 0.5)
                continue
            except Violation:
                abort(sock)
                raise
            if how == "cut":
                abort(sock)
                delay = 0.0
                continue
            sock.setblocking(True)
            close_gently(sock, 1.0)
            return


def send(args):
    w = Writer(args)
    try:
        w.run()
    except Violation as err:
        print(f"ERROR {err}", flush=True)
        log(f"send: {err}")
        sys.exit(1)
    print(f"DONE sent={w.created} resent={w.resent} acked={w.acked}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--framing", default="u32be", choices=Framing.NAMES)
    common.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE)
    sub = parser.add_subparsers(dest="command", required=True)
    lp = sub.add_parser("listen", parents=[common])
    lp.add_argument("port_file")
    lp.add_argument("--port", type=int, default=0)
    lp.add_argument("--max-sessions", type=int, default=1024)
    lp.add_argument("--session-ttl", type=float, default=60.0)
    lp.add_argument("--cut-after", type=int, default=0)
    lp.add_argument("--echo", action="store_true")
    lp.add_argument("--max-ack", type=int)
    lp.add_argument("--literal-flags", action="store_true")
    lp.add_argument("--expect", type=int)
    lp.add_argument("--grace", type=float, default=3.0)
    lp.add_argument("--io-timeout", type=float, default=10.0)
    lp.add_argument("--idle-timeout", type=float, default=60.0)
    lp.add_argument("--max-time", type=float, default=300.0)
    sp = sub.add_parser("send", parents=[common])
    sp.add_argument("addr", metavar="HOST:PORT")
    sp.add_argument("--count", type=int, required=True)
    sp.add_argument("--size", type=int, default=64)
    sp.add_argument("--cut-every", type=int, default=0)
    sp.add_argument("--session")
    sp.add_argument("--expect-replies", action="store_true")
    sp.add_argument("--max-unacked", type=int, default=0)
    sp.add_argument("--reset-resumed", type=int, default=0)
    sp.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    {"listen": listen, "send": send}[args.command](args)


if __name__ == "__main__":
    main()
