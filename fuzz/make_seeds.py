#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/seed-*).

It signs tokens with Python's own hmac module, an implementation independent of
the crate's, so the seeds double as a check of the token format in
src/token.rs. Re-running it rewrites the seeds and touches nothing else.
"""
import base64, hashlib, hmac, os, struct

KEY1, KEY2 = bytes([0x5A]) * 32, bytes([0xA5]) * 32
NAME = b"__Host-sessiondb"


def token(key, key_id, sid, label=b"session"):
    signed = bytes([1]) + struct.pack(">I", key_id) + sid
    msg = b"sessiondb\0" + bytes([len(label)]) + label + signed
    tag = hmac.new(key, msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(signed + tag).rstrip(b"=")


def write(target, name, data):
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


t1 = token(KEY1, 1, bytes(range(32)))
t2 = token(KEY2, 2, bytes([0x42]) * 32)
csrf = token(KEY1, 1, bytes(range(32)), b"csrf")
assert len(t1) == 92

headers = {
    "empty": b"",
    "plain": b"a=1; b=2",
    "ours": b"theme=dark; " + NAME + b"=" + t1 + b"; lang=en",
    "ours-tight": b"theme=dark;" + NAME + b"=" + t1 + b";lang=en",
    "ours-quoted": NAME + b'="' + t1 + b'"',
    "old-key": NAME + b"=" + t2,
    "csrf-as-session": NAME + b"=" + csrf,
    "two-headers": b"a=1\n" + NAME + b"=" + t1,
    "duplicate-names": NAME + b"=" + b"A" * 92 + b"; " + NAME + b"=" + t1,
    "whitespace": b" \t " + NAME + b" = " + t1 + b" ; ",
    "no-equals": b"lonely; " + NAME + b"=" + t1,
    "high-bytes": b"\xff\xfe=\x00\x01; " + NAME + b"=" + t1,
    "truncated": NAME + b"=" + t1[:60],
}
for name, data in headers.items():
    write("cookie_header", name, data)

for name, data in {
    "valid": t1,
    "old-key": t2,
    "csrf": csrf,
    "padded": t1 + b"==",
    "id-and-flips": bytes(range(32)) + b"\x05\x01\x50\x80",
    "id-and-truncate": bytes(range(32)) + b"\xff\x10",
    "id-only": bytes([7]) * 32,
    "empty": b"",
}.items():
    write("token", name, data)

# Structured input for set_cookie: arbitrary bytes; any prefix decodes.
for i, data in enumerate([b"", bytes(64), bytes(range(256)), b"\xff" * 128, hashlib.sha512(b"set_cookie seed").digest() * 8]):
    write("set_cookie", str(i), data)

# engine_ops: arbitrary bytes decode to operation sequences.
for i in range(6):
    write("engine_ops", str(i), hashlib.sha512(b"engine_ops %d" % i).digest() * (i + 1))
write("engine_ops", "zeros", bytes(64))


# record: stored values (src/record.rs), header then bincode 2 (standard
# config: varint integers, little-endian) of the body.
def varint(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfb" + struct.pack("<H", n)
    if n < 1 << 32:
        return b"\xfc" + struct.pack("<I", n)
    return b"\xfd" + struct.pack("<Q", n)


def body(created, last_seen, deadline, idle, data):
    out = varint(created) + varint(last_seen) + varint(deadline) + varint(idle)
    out += varint(len(data))
    for k, v in sorted(data.items()):
        out += varint(len(k)) + k + varint(len(v)) + v
    return out


def record(version, user, b, expires_at=None, fmt=1):
    user = user or b""
    if expires_at is None:
        expires_at = 0
    return bytes([fmt]) + struct.pack(">QQH", version, expires_at, len(user)) + user + b


NOW = 1_767_225_600_000  # sessiondb_fuzz::RECORD_NOW_MS
HOUR = 3_600_000
live = body(NOW - HOUR, NOW - 60_000, NOW + 24 * HOUR, HOUR, {b"cart": b"\x02\x04book\x03pen", b"n": b"\x07"})
records = {
    "live-no-user": record(1, None, live, NOW - 60_000 + HOUR),
    "live-user": record(7, b"alice", live, NOW - 60_000 + HOUR),
    "live-unicode-user": record(2, "\u00fcn\u00efcode".encode(), live, NOW - 60_000 + HOUR),
    "stale-touch": record(3, b"bob", body(NOW - 2 * HOUR, NOW - HOUR, NOW + HOUR, 2 * HOUR, {}), NOW + HOUR),
    "expired": record(1, b"carol", body(0, 10, 1000, 100, {b"k": b"\x00"}), 110),
    "empty-body": record(1, None, body(0, 0, 0, 0, {}), 0),
    "header-disagrees": record(1, b"dave", live, NOW + 365 * 24 * HOUR),
    "big-values": record(1, b"eve", body(NOW, NOW, NOW + HOUR, HOUR, {b"blob": bytes(range(256)) * 4, b"x" * 300: b"y"}), NOW + HOUR),
}
for name, data in records.items():
    write("record", name, data)
good = records["live-user"]
write("record", "empty", b"")
write("record", "version-only", b"\x01")
write("record", "truncated-header", good[:12])
write("record", "truncated-user", good[:21])
write("record", "truncated-body", good[:-3])
write("record", "wrong-version-0", b"\x00" + good[1:])
write("record", "wrong-version-2", b"\x02" + good[1:])
write("record", "trailing", good + b"\x00")
write("record", "bad-utf8-user", record(1, b"\xff\xfe", live, NOW + HOUR))
write("record", "user-longer-than-record", good[:17] + b"\xff\xff" + good[19:])
# Length prefixes claiming far more than there is: must fail, not allocate.
write("record", "huge-map", record(1, None, varint(0) * 4 + b"\xfd" + struct.pack("<Q", 2**62), NOW + HOUR))
write("record", "huge-value", record(1, None, varint(0) * 4 + varint(1) + varint(1) + b"k" + b"\xfc" + struct.pack("<I", 2**31), NOW + HOUR))
write("record", "bad-utf8-key", record(1, None, varint(0) * 4 + varint(1) + varint(2) + b"\xc3\x28" + varint(0), NOW + HOUR))

# The control socket: what a client sends, lines split at \n.
HELLO = b'{"sessiondb":"control","version":1}\n'
sid = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=")
rec = (b'{"id":"' + sid + b'","version":1,"user":"alice","created_at":1700000000000,'
       b'"last_seen":1700000000000,"expires_at":1700001800000,"absolute_deadline":1700086400000,'
       b'"idle_timeout_ms":1800000,"data":{"n":"Bw=="}}')
control = {
    "empty": b"",
    "hello-only": HELLO,
    "hello-no-newline": HELLO[:-1],
    "wrong-version": b'{"sessiondb":"control","version":2}\n{"op":"stats"}\n',
    "not-hello": b'{"op":"stats"}\n',
    "garbage": b"\x00\xff GET / HTTP/1.1\r\n\r\n",
    "stats": HELLO + b'{"op":"stats"}\n{"op":"metrics"}\n',
    "records": HELLO + b'{"op":"records","after":null,"limit":1000}\n{"op":"records","after":"' + sid + b'","limit":18446744073709551615}\n',
    "records-bad-after": HELLO + b'{"op":"records","after":"short","limit":5}\n',
    "user-ops": HELLO + b'{"op":"sessions_of","user":"alice"}\n{"op":"destroy_user","user":"alice"}\n{"op":"destroy_user","user":""}\n',
    "id-ops": HELLO + b'{"op":"record","id":"' + sid + b'"}\n{"op":"destroy_id","id":"' + sid + b'"}\n{"op":"destroy_id","id":"-"}\n',
    "maintenance": HELLO + b'{"op":"sweep"}\n{"op":"check"}\n{"op":"repair"}\n',
    "import": HELLO + b'{"op":"import","record":' + rec + b'}\n{"op":"import","record":' + rec + b'}\n',
    "import-bad-base64": HELLO + b'{"op":"import","record":' + rec.replace(b"Bw==", b"!!") + b'}\n',
    "then-garbage": HELLO + b'{"op":"metrics"}\nnot json\n{"op":"metrics"}\n',
    "deep-nesting": HELLO + b"[" * 4096 + b"\n",
    "crlf": HELLO[:-1] + b'\r\n{"op":"metrics"}\r\n',
}
for name, data in control.items():
    write("control_request", name, data)

print("golden:", t1.decode())
