"""Message metadata from a real Dovecot's FETCH answers, including mail that is broken on purpose."""

import base64
import datetime as dt

import pytest
from imapclient.exceptions import ProtocolError
from imapclient.response_types import Address, Envelope

from maildesk_mail_client.providers.imap import wire
from maildesk_mail_client.providers.imap.headers import decode_header
from maildesk_mail_client.providers.imap.metadata import message_meta

from .harness.dovecot import make_message
from .harness.sync_world import open_session


def index(account, *messages):
    """Append ``messages`` (bytes) to INBOX and fetch their metadata in one chunk, in order."""
    client = account.client()
    try:
        for raw in messages:
            client.append("INBOX", raw)
    finally:
        client.logout()
    with open_session(account) as session:
        session.select("INBOX")
        return session.fetch_metadata(session.search_uids())


def raw_message(*headers, body=b"Hello.\r\n"):
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def test_a_plain_message(imap_account):
    raw = make_message(subject="Quarterly report", from_="Alice Example <alice@example.com>",
                       to="Bob <bob@example.com>, carol@example.com", cc='"Dan, the man" <dan@example.com>',
                       date="Tue, 14 May 2024 09:30:00 +0200", message_id="<q2@example.com>",
                       body="Numbers are   up.\n\nSee you.\n")
    [meta] = index(imap_account(), raw)
    assert meta.subject == "Quarterly report"
    assert meta.from_address == "Alice Example <alice@example.com>"
    assert meta.to_addresses == "Bob <bob@example.com>, carol@example.com"
    assert meta.cc_addresses == '"Dan, the man" <dan@example.com>'
    assert meta.message_id == "<q2@example.com>"
    assert meta.date == dt.datetime(2024, 5, 14, 7, 30), "naive UTC"
    assert meta.internal_date.tzinfo is None
    assert meta.size == len(raw)
    assert meta.snippet == "Numbers are up. See you."
    assert not meta.has_attachments and meta.parse_error is None
    assert meta.modseq and meta.flags.seen is False


@pytest.mark.parametrize("header, expected", [
    (b"=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
    (b"=?ISO-8859-1?Q?caf=E9_cr=E8me?=", "café crème"),
    (b"=?koi8-r?B?8NLJ18XU?=", "Привет"),
    (b"=?shift_jis?B?k/qWe4zqgsyMj5a8?=", "日本語の件名"),
    (b"=?gb2312?B?1tDOxNb3zOI=?=", "中文主题"),
    # A UTF-8 character split across two words, and the space between them dropped.
    (b"=?utf-8?B?R3LD?= =?utf-8?B?vMOfZSBhdXMgS8O2bG4=?=", "Grüße aus Köln"),
    (b"Re: =?utf-8?q?caf=C3=A9?= and  more", "Re: café and more"),
    (b"=?x-unknown?Q?J=F6rg?=", "Jörg"),
    (b"=?utf-8?B?!!!?= stays", "=?utf-8?B?!!!?= stays"),
    (b"Raw UTF-8 \xc3\xbcber", "Raw UTF-8 über"),
    (b"Raw latin-1 \xfcber", "Raw latin-1 über"),
])
def test_encoded_and_raw_subjects(imap_account, header, expected):
    [meta] = index(imap_account(), raw_message(b"Subject: " + header, b"From: a@example.com"))
    assert meta.subject == expected and meta.parse_error is None


# Encoded words naming a codec that is not a charset: "undefined" fails on all
# input, "idna" and "punycode" on 8-bit bytes and on the "replace" error
# handler, with plain UnicodeError rather than UnicodeDecodeError.
BROKEN_CHARSET_WORDS = [
    (b"=?undefined?Q?x?=", "x"),
    (b"=?idna?Q?=FF?=", "\u00ff"),
    (b"=?undefined?B?SvZyZw==?=", "J\u00f6rg"),
    (b"=?punycode?Q?caf=E9?=", "caf\u00e9"),
]


@pytest.mark.parametrize("word, readable", BROKEN_CHARSET_WORDS)
def test_a_broken_charset_costs_no_other_envelope_field(imap_account, word, readable):
    [meta] = index(imap_account(), raw_message(
        b"Subject: Re: " + word,
        b"From: " + word + b" <sender@example.com>",
        b"To: Bob <bob@example.com>, " + word + b" <carol@example.com>",
        b"Cc: " + word + b" <dan@example.com>",
        b"Message-ID: <broken-charset@example.com>",
        b"In-Reply-To: <first@example.com>",
        b"Date: Tue, 14 May 2024 09:30:00 +0200"))
    assert meta.subject == f"Re: {readable}", "the bad word falls back to readable text"
    assert meta.from_address == f"{readable} <sender@example.com>"
    assert meta.to_addresses == f"Bob <bob@example.com>, {readable} <carol@example.com>"
    assert meta.cc_addresses == f"{readable} <dan@example.com>"
    assert meta.message_id == "<broken-charset@example.com>"
    assert meta.in_reply_to == "<first@example.com>"
    assert meta.date == dt.datetime(2024, 5, 14, 7, 30)
    assert meta.parse_error is None, "a charset falling back is not a parse error"


class _LostZone(dt.tzinfo):
    """A date a parser could not finish: asking its offset fails."""

    def utcoffset(self, value):
        raise RuntimeError("zone lost")


def test_each_envelope_field_is_read_on_its_own():
    """One field, or one address, that cannot be read at all costs only itself, and is named in parse_error."""
    envelope = Envelope(
        date=dt.datetime(2024, 5, 14, 9, 30, tzinfo=_LostZone()),
        subject=b"=?undefined?Q?x?= and =?idna?Q?=FF?=",
        from_=(Address(b"=?idna?Q?=FF?=", None, b"alice", b"example.com"),),
        sender=None, reply_to=None,
        to=(Address(b"Bob", None, b"bob", b"example.com"), object(), Address(None, None, b"carol", b"example.com")),
        cc=None, bcc=None,
        in_reply_to=b"<first@example.com>", message_id=b"<m@example.com>")
    data = {b"FLAGS": (b"\\Seen",), b"INTERNALDATE": dt.datetime(2024, 5, 14, 9, 31), b"RFC822.SIZE": 120,
            b"ENVELOPE": envelope, b"BODY[HEADER.FIELDS (REFERENCES)]": b"", b"BODYSTRUCTURE": None}
    meta = message_meta(7, data)
    assert meta.subject == "x and \u00ff"
    assert meta.from_address == "\u00ff <alice@example.com>"
    assert meta.to_addresses == "Bob <bob@example.com>, carol@example.com", "the other addresses stay"
    assert (meta.message_id, meta.in_reply_to) == ("<m@example.com>", "<first@example.com>")
    assert meta.date is None and meta.flags.seen and meta.size == 120
    problems = meta.parse_error.split("; ")
    assert [p.split(":")[0] for p in problems if p.startswith("ENVELOPE")] == [
        "ENVELOPE to_addresses address 2", "ENVELOPE date"]
    assert "RuntimeError: zone lost" in meta.parse_error


def test_encoded_display_names(imap_account):
    [meta] = index(imap_account(), raw_message(
        b"From: =?iso-8859-1?B?SvZyZyBN/GxsZXI=?= <jm@example.com>",
        b"To: =?utf-8?q?=E5=B1=B1=E7=94=B0?= <yamada@example.jp>, \"Smith, J.\" <js@example.com>",
        b"Cc: undisclosed-recipients:;",
        b"Subject: names"))
    assert meta.from_address == "Jörg Müller <jm@example.com>"
    assert meta.to_addresses == '山田 <yamada@example.jp>, "Smith, J." <js@example.com>'
    assert meta.cc_addresses is None


@pytest.mark.parametrize("date", [b"the day after tomorrow", b"Mon, 45 Foo 2024 99:99:99 +0200", b""])
def test_an_unparsable_date_is_none_not_an_error(imap_account, date):
    headers = [b"Subject: dated", b"From: a@example.com"] + ([b"Date: " + date] if date else [])
    [meta] = index(imap_account(), raw_message(*headers))
    assert meta.date is None and meta.parse_error is None
    assert meta.internal_date is not None


def test_threading_headers(imap_account):
    [meta] = index(imap_account(), raw_message(
        b"Subject: Re: plan", b"From: a@example.com", b"Message-ID: <c@example.com>",
        b"In-Reply-To: <b@example.com>",
        b"References: <a@example.com>\r\n\t<b@example.com>"))
    assert meta.message_id == "<c@example.com>"
    assert meta.in_reply_to == "<b@example.com>"
    assert meta.references == "<a@example.com> <b@example.com>"
    [bare] = index(imap_account(), raw_message(b"Subject: first", b"From: a@example.com"))
    assert (bare.message_id, bare.in_reply_to, bare.references) == (None, None, None)


def test_attachments(imap_account):
    pdf = make_message(subject="pdf", attachments=[("report.pdf", b"%PDF-1.4", "application/pdf")])
    text_attachment = make_message(subject="txt", attachments=[("notes.txt", b"notes", "text/plain")])
    alternative = make_message(subject="alt", html="<p>Hello</p>")
    inline_image = raw_message(
        b"Subject: logo", b"From: a@example.com", b"MIME-Version: 1.0",
        b'Content-Type: multipart/related; boundary="R"',
        body=b"--R\r\nContent-Type: text/html\r\n\r\n<img src=cid:x>\r\n--R\r\n"
             b'Content-Type: image/png; name="logo.png"\r\nContent-ID: <x>\r\n\r\nPNG\r\n--R--\r\n')
    forwarded = raw_message(
        b"Subject: fwd", b"From: a@example.com", b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="M"',
        body=b"--M\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--M\r\nContent-Type: message/rfc822\r\n"
             b"Content-Disposition: attachment\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--M--\r\n")
    metas = index(imap_account(), pdf, text_attachment, alternative, inline_image, forwarded)
    assert [m.has_attachments for m in metas] == [True, True, False, True, True]
    assert metas[4].snippet == "see below"


def test_snippets(imap_account):
    qp_latin1 = raw_message(b"Subject: qp", b"Content-Type: text/plain; charset=iso-8859-1",
                            b"Content-Transfer-Encoding: quoted-printable", body=b"Gr=FC=DFe=\r\n aus K=F6ln\r\n")
    long_base64 = raw_message(b"Subject: b64", b"Content-Type: text/plain; charset=utf-8",
                              b"Content-Transfer-Encoding: base64",
                              body=base64.encodebytes(("Ünïcode wörds " * 400).encode()).replace(b"\n", b"\r\n"))
    html = raw_message(b"Subject: html", b"Content-Type: text/html; charset=utf-8",
                       body=b"<html><head><style>p {color: red}</style><title>T</title></head><body>"
                            b"<!-- hidden --><p>Hello&nbsp;<b>world</b> &amp; friends</p></body></html>")
    nested = make_message(subject="nested", body="Plain part first.\n", html="<p>HTML part</p>",
                          attachments=[("a.bin", b"\x00\x01", "application/octet-stream")])
    attachment_first = raw_message(
        b"Subject: pdf first", b"MIME-Version: 1.0", b'Content-Type: multipart/mixed; boundary="P"',
        body=b"--P\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--P--\r\n")
    metas = index(imap_account(), qp_latin1, long_base64, html, nested, attachment_first)
    assert metas[0].snippet == "Grüße aus Köln"
    assert metas[1].snippet.startswith("Ünïcode wörds Ünïcode") and len(metas[1].snippet) <= 200
    assert metas[2].snippet == "Hello\u00a0world & friends".replace("\u00a0", " ")
    assert metas[3].snippet == "Plain part first."
    assert metas[4].snippet is None
    assert all(m.parse_error is None for m in metas)


MALFORMED = [
    # No closing boundary, and a part whose base64 is cut short.
    b"From: a@example.com\r\nSubject: cut\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XYZ\r\n\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    b"--XYZ\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLj\r\n",
    # A boundary that is never used.
    b'From: b@example.com\r\nSubject: nobound\r\nContent-Type: multipart/alternative; boundary="nope"\r\n\r\n'
    b"just text\r\n",
    # Raw 8-bit junk and an unknown charset in the headers, a date that is not one.
    b"From: =?x-unknown?Q?J=F6rg?= <j@example.com>\r\nSubject: caf\xe9 \xff\xfe =?utf-8?B?!!!?=\r\n"
    b"Date: the day after tomorrow\r\nContent-Type: text/plain; charset=klingon\r\n\r\nbody \xe9\r\n",
    # Headers only, no body, no blank line.
    b"Subject: no body\r\nFrom: c@example.com",
    # Garbage that is not a message at all, with NUL bytes.
    b"\x00\x01 garbage \x02 line without colon\r\n\r\n\xff\xff\xff",
    # Garbage header lines and a header with NUL in it.
    b"From d@example.com\r\n: no name\r\nX-\x00Bad: \x00\r\nSubject: junk\x00headers\r\n\r\nok\r\n",
    # Base64 body that is not base64, under a charset that is a bytes codec.
    b"Subject: bad b64\r\nContent-Type: text/plain; charset=base64\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"!!!not*base64===\r\n",
    # Nested multipart with an attachment, and a Message-ID with spaces.
    b"From: d@example.com\r\nSubject: nested\r\nMessage-ID: < spaced id @x >\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=A\r\n\r\n--A\r\nContent-Type: multipart/alternative; boundary=B\r\n"
    b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n--A\r\nContent-Type: image/png\r\n"
    b'Content-Disposition: attachment; filename="p.png"\r\n\r\nPNG\r\n--A--\r\n',
]


def test_malformed_mime_is_indexed_without_raising(imap_account):
    account = imap_account()
    metas = index(account, make_message(subject="before"), *MALFORMED, make_message(subject="after"))
    assert [m.uid for m in metas] == list(range(1, len(MALFORMED) + 3)), "every UID comes back"
    by_subject = {m.subject: m for m in metas}
    assert by_subject["before"].parse_error is None and by_subject["after"].parse_error is None
    assert by_subject["cut"].has_attachments and by_subject["cut"].snippet == "hi"
    assert by_subject["nested"].has_attachments and by_subject["nested"].snippet == "x"
    odd = next(m for m in metas if m.subject and m.subject.startswith("caf"))
    assert odd.subject == "café \u00ff\u00fe =?utf-8?B?!!!?=" and odd.date is None
    assert odd.from_address == "Jörg <j@example.com>"
    for meta in metas:
        texts = [meta.subject, meta.from_address, meta.to_addresses, meta.message_id, meta.snippet]
        assert not any("\x00" in text for text in texts if text), "NUL cannot be stored in PostgreSQL"


def _contains(raw, marker):
    return any(marker in (part if isinstance(part, bytes) else b"".join(part)) for part in raw)


@pytest.fixture
def poisoned_parser(monkeypatch):
    """imapclient's parser, failing on answers that contain a marker, as it would on a server's bad bytes."""
    markers = []
    real = wire.parse_fetch_response

    def parse(raw, *args, **kwargs):
        if any(_contains(raw, marker) for marker in markers):
            raise ProtocolError("unexpected token")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(wire, "parse_fetch_response", parse)
    return markers


def test_an_unparseable_answer_is_bisected_to_the_culprits(imap_account, poisoned_parser):
    messages = [make_message(subject=f"POISON {n}" if n in (4, 11) else f"fine {n}") for n in range(1, 17)]
    poisoned_parser.append(b"POISON")
    metas = index(imap_account(), *messages)
    assert [m.uid for m in metas] == list(range(1, 17))
    bad = {m.uid: m for m in metas if m.parse_error}
    assert set(bad) == {4, 11}
    assert bad[4].subject is None and bad[4].size > 0 and bad[4].internal_date is not None
    assert "could not be parsed" in bad[4].parse_error and "unexpected token" in bad[4].parse_error
    assert all(m.subject == f"fine {m.uid}" for m in metas if m.uid not in bad)


def test_a_message_whose_minimal_answer_fails_too_keeps_its_uid(imap_account, poisoned_parser):
    poisoned_parser.append(b"UID 2 ")
    metas = index(imap_account(), *(make_message(subject=f"m{n}") for n in range(3)))
    assert [(m.uid, m.subject, bool(m.parse_error)) for m in metas] == [(1, "m0", False), (2, None, True),
                                                                       (3, "m2", False)]


def test_expunged_uids_are_simply_absent(imap_account):
    account = imap_account()
    index(account, *(make_message(subject=f"m{n}") for n in range(5)))
    with open_session(account) as session:
        session.select("INBOX")
        client = account.client()
        client.select_folder("INBOX")
        client.delete_messages([2, 4])
        client.expunge()
        client.logout()
        session.select("INBOX")
        assert [m.uid for m in session.fetch_metadata([5, 1, 2, 3, 4, 4, 99])] == [1, 3, 5]
        assert session.fetch_metadata([]) == []


@pytest.mark.parametrize("raw, expected", [
    (None, None),
    (b"  ", None),
    ("=?utf-8?q?a?= =?utf-8?q?b?=  c", "ab c"),
    (b"=?utf-8*en?q?lang?=", "lang"),
    (b"=?utf-8?q?x?= =?iso-8859-1?q?=E9?=", "xé"),
    (b"=?utf-8?B?!!!?= =?utf-8?q?ok?=", "=?utf-8?B?!!!?= ok"),
    (b"tab\tand\r\n folded", "tab and folded"),
    (b"=?zlib?q?x?=", "x"),
    (b"=?undefined?q?x?=", "x"),
    (b"=?idna?q?=FF?=", "\u00ff"),
    (b"=?idna?q?caf=C3=A9?=", "caf\u00e9"),
    (b"=?punycode?b?/w==?=", "\u00ff"),
    (b"=?utf-8\x00?q?nul?=", "nul"),
    (b"=?base64?q?=FF?= =?zlib?q?=FE?=", "\u00ff\u00fe"),
    (2024, "2024"),
])
def test_decode_header_never_raises(raw, expected):
    assert decode_header(raw) == expected
