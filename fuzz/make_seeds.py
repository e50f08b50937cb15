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

print("golden:", t1.decode())
