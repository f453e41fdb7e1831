"""Malformed mail at scale: CPython's email test corpus and ~200 fuzzed messages, synced end to end.

The corpus is the ``msg_*.txt`` files CPython tests its own email package
with (read from the running Python's stdlib, never copied here). The fuzzed
messages come from a seeded generator, so a failure names a message that
the next run builds again, byte for byte: encoded words in charsets that are
not charsets (``undefined``, ``idna``, bytes-to-bytes codecs), random 8-bit
bytes, NULs, lone CRs, lines without a colon, Message-IDs and References of
thousands of characters. Each goes into a real Dovecot, the real engine
syncs it into a real PostgreSQL, and every message must get its row, with
what Dovecot could read of its envelope kept or the reason in ``parse_error``.
"""

import base64
import binascii
import email
import glob
import os
import random
import re

import pytest
from imapclient.exceptions import ProtocolError

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.providers.imap.headers import decode_header

from .harness.sync_world import SyncWorld

CORPUS = os.path.normpath(os.path.join(os.path.dirname(email.__file__), "..", "test", "test_email", "data"))
SEED = 2047
APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")
FUZZED = 200

# Labels a header can carry: real charsets, codecs that are not charsets
# ("undefined" fails on everything, "idna" and "punycode" on 8-bit bytes,
# base64 and zlib turn bytes into bytes), and names nothing knows.
CHARSETS = ("undefined", "idna", "punycode", "base64", "zlib", "bz2", "rot13", "hex", "utf-7", "utf-16", "utf-32",
            "x-unknown", "utf-8", "UTF-8*en", '"utf-8"', "iso-8859-1", "koi8-r", "shift_jis", "gb2312", "ascii",
            "utf-8\x00", "")


def corpus_messages() -> list[tuple[str, bytes]]:
    """(name, raw) of CPython's corpus; a loud skip when this Python was installed without its tests."""
    paths = sorted(glob.glob(os.path.join(CORPUS, "msg_*.txt")))
    if not paths:
        pytest.skip(f"NO CPYTHON EMAIL CORPUS, TEST SKIPPED: {CORPUS} has no msg_*.txt "
                    "(this Python was installed without its test package)")
    messages = []
    for path in paths:
        with open(path, "rb") as file:
            messages.append((os.path.basename(path), file.read()))
    return messages


# -- the fuzzer --------------------------------------------------------------


_HEADER_BYTES = bytes(b for b in range(256) if b not in (10, 13))


def _random_bytes(rng, low=1, high=60):
    """Anything but CR and LF, which would end the header (lone CRs and NULs come separately)."""
    return bytes(rng.choice(_HEADER_BYTES) for _ in range(rng.randint(low, high)))


def _encoded_word(rng):
    charset = rng.choice(CHARSETS).encode("latin-1")
    text = rng.choice(["Grüße", "日本語"]).encode(rng.choice(["utf-8", "utf-16", "gb18030"]))
    data = rng.choice([_random_bytes(rng, 1, 20), text, b"caf\xe9", b""])
    encoding = rng.choice([b"Q", b"q", b"B", b"b", b"X"])
    if encoding in b"Bb":
        payload = base64.b64encode(data)
        payload = rng.choice([payload, payload.rstrip(b"="), payload[:-1], b"!!!" + payload])
    else:
        payload = binascii.b2a_qp(data, header=True).replace(b"=\n", b"").replace(b"?", b"=3F")
        payload = rng.choice([payload, payload + b"=F", payload.replace(b"_", b" ")])
    return b"=?" + charset + b"?" + encoding + b"?" + payload + b"?="


def _text(rng):
    """A header value: plain, encoded words (adjacent or not), raw 8-bit, NULs, lone CRs."""
    parts = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.45:
            parts.append(_encoded_word(rng))
        elif kind < 0.65:
            parts.append(_random_bytes(rng))
        elif kind < 0.75:
            parts.append(rng.choice([b"\x00", b"a\x00b", b"\r", b"x\ry", b"\t\x7f\x1b"]))
        else:
            parts.append(rng.choice([b"Re:", b"Fwd:", b"hello", b"=?", b"?=", b"=?utf-8?Q?", b"\xc3", b"\xe2\x80"]))
    return rng.choice([b" ", b"", b"\r\n "]).join(parts)


def _address(rng):
    name = rng.choice([_encoded_word(rng), _text(rng), b'"' + _text(rng) + b'"', b'"unterminated', b""])
    mailbox = rng.choice([b"user", b"us\xe9r", b"a.b+c", b'"quoted local"', b"", b"\x00"])
    host = rng.choice([b"example.com", b"ex\xe4mple.de", b"[127.0.0.1]", b"", b"xn--mnchen-3ya.de"])
    return rng.choice([
        name + b" <" + mailbox + b"@" + host + b">",
        mailbox + b"@" + host,
        b"Group: " + mailbox + b"@" + host + b", " + name + b" <x@" + host + b">;",
        b"undisclosed-recipients:;",
        b"<<<>>>", b"@@@", b",,,", name,
    ])


def _message_id(rng):
    right = rng.choice([b"example.com", _random_bytes(rng, 1, 10), b""])
    return rng.choice([
        b"<" + f"fuzz-{rng.getrandbits(64):x}".encode() + b"@" + right + b">",
        b"<" + b"x" * rng.randint(5000, 12000) + b"@long.example>",
        b"< spaced id @x >", b"no-brackets@example.com", b"<\x00nul@example.com>", _encoded_word(rng),
    ])


def _references(rng):
    many = b" ".join(b"<ref-%d-%s@example.com>" % (n, b"y" * rng.randint(10, 90)) for n in range(rng.randint(80, 200)))
    return rng.choice([many, many.replace(b" ", b"\r\n\t"), _message_id(rng) + b" " + _text(rng)])


def _header_lines(rng):
    headers = [
        b"Subject: " + _text(rng),
        b"From: " + _address(rng),
        b"To: " + b", ".join(_address(rng) for _ in range(rng.randint(1, 4))),
        b"Message-ID: " + _message_id(rng),
    ]
    extras = [
        b"Cc: " + _address(rng),
        b"Date: " + rng.choice([b"Tue, 14 May 2024 09:30:00 +0200", b"Mon, 45 Foo 2024 99:99:99 +9999",
                                b"Thu, 01 Jan 1 00:00:00 -2359", b"Fri, 31 Dec 9999 23:59:59 -1200", _text(rng)]),
        b"In-Reply-To: " + _message_id(rng),
        b"References: " + _references(rng),
        b"Subject: a second subject",
        b"Message-ID: <second@example.com>",
        b"Content-Type: text/plain; charset=" + rng.choice(CHARSETS).encode("latin-1"),
        b"Content-Transfer-Encoding: " + rng.choice([b"base64", b"quoted-printable", b"x-uuencode", b"8bit"]),
        b"a header line without a colon",
        b": a value without a name",
        b"X-\x00Nul: \x00",
        b"X-Lone-CR: one\rtwo",
        b"X-Folded: first\r\n\t" + _text(rng),
    ]
    headers += rng.sample(extras, rng.randint(0, len(extras)))
    rng.shuffle(headers)
    return headers


def fuzzed_messages(seed=SEED, count=FUZZED) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    messages = []
    for number in range(count):
        headers = [b"X-Fuzz: %d" % number, *_header_lines(rng)]
        body = rng.choice([b"Hello.\r\n", _random_bytes(rng, 0, 300) + b"\r\n", b"!!!not*base64===\r\n", b""])
        messages.append((f"fuzz {number} (seed {seed})", b"\r\n".join(headers) + b"\r\n\r\n" + body))
    return messages


# -- what Dovecot itself says --------------------------------------------------


def server_envelopes(mailbox) -> dict[int, object]:
    """{uid: ENVELOPE} as Dovecot gives it; None for a message whose answer imapclient cannot parse."""
    client = mailbox.client(timeout=60)
    client.normalise_times = False  # local time cannot hold "31 Dec 9999 23:59:59 -1200"
    try:
        client.select_folder("INBOX", readonly=True)
        envelopes = {}
        for uid in sorted(client.search("ALL")):
            try:
                envelopes[uid] = client.fetch([uid], ["ENVELOPE"])[uid][b"ENVELOPE"]
            except (ProtocolError, ValueError, OverflowError):
                envelopes[uid] = None
        return envelopes
    finally:
        client.logout()


def _has_text(raw) -> bool:
    return bool(raw is not None and decode_header(raw))


def _has_address(addresses) -> bool:
    return any(address.host for address in addresses or ())


def _excused(parse_error, field) -> bool:
    """A field Dovecot could read may be missing from the row only when ``parse_error`` names that
    field, or says the answer had no readable ENVELOPE at all (it could not be parsed, so only the
    minimal items were fetched; or the server left it out). One header must never cost the others."""
    if not parse_error:
        return False
    return f"ENVELOPE {field}" in parse_error or "ENVELOPE" not in parse_error or "ENVELOPE: missing" in parse_error


# -- the tests -----------------------------------------------------------------


def test_the_fuzz_is_the_same_every_run():
    """A failure names a message by number and seed: it must be the same message next time."""
    messages = fuzzed_messages()
    assert messages == fuzzed_messages() and len(messages) == FUZZED
    raw = b"".join(message for _name, message in messages)
    for needle in (b"=?undefined?", b"=?idna?", b"=?zlib?", b"=?utf-7?", b"x" * 5000, b"\x00", b"x\ry"):
        assert needle in raw, needle


def test_a_corpus_of_malformed_mail_is_indexed_whole(pg_db, imap_account, dovecot):
    messages = corpus_messages() + fuzzed_messages()
    mailbox = imap_account(dovecot)
    client = mailbox.client(timeout=60)
    try:
        names = {}
        for name, raw in messages:
            uid = int(APPENDUID.search(client.append("INBOX", raw)).group(1))  # Dovecot refusing one raises
            names[uid] = name
    finally:
        client.logout()

    world = SyncWorld(pg_db, mailbox, SyncSettings(chunk=100))
    world.full_sync()
    assert world.assert_index_matches_server() == len(messages), "every message has its row"

    # Bad mail is the sender's problem, never the account's or the folder's.
    cr = world.conn.cursor()
    cr.execute("SELECT auth_state, failure_count, last_error FROM mailbox_account WHERE id = %s", [world.account_id])
    assert cr.fetchone() == ("ok", 0, None)
    cr.execute("SELECT path, last_error FROM maildesk_folder WHERE account_id = %s AND last_error IS NOT NULL",
               [world.account_id])
    assert cr.fetchall() == []
    world.conn.commit()

    # What Dovecot could read of an envelope, the index has, or says why not.
    rows = {row["uid"]: row for row in world.rows()}
    lost = []
    for uid, envelope in server_envelopes(mailbox).items():
        row = rows[uid]
        if envelope is None:  # imapclient cannot parse it either: the engine must have said so
            if not row["parse_error"]:
                lost.append((names[uid], "ENVELOPE unparseable, yet no parse_error"))
            continue
        expected = {
            "message_id": _has_text(envelope.message_id),
            "subject": _has_text(envelope.subject),
            "from_address": _has_address(envelope.from_),
            "to_addresses": _has_address(envelope.to),
        }
        lost += [(names[uid], field, row["parse_error"]) for field, present in expected.items()
                 if present and not row[field] and not _excused(row["parse_error"], field)]
    assert not lost, f"{len(lost)} envelope field(s) lost without a parse_error naming them: {lost[:5]}"
    for row in rows.values():
        texts = [row[field] for field in ("subject", "from_address", "to_addresses", "message_id", "snippet")]
        assert not any("\x00" in text for text in texts if text), "NUL cannot be stored in PostgreSQL"
