"""Reading a message: MIME parsing (message_view.py) and hostile HTML (html_safety.py).

The messages are built with the ``email`` package as mail clients send them
(alternatives, related images, attachments, forwarded messages), plus
CPython's own malformed-mail corpus and seeded fuzzing of MIME structure,
which must never make the parser raise. The XSS vectors are data
(``tests/data/xss_vectors.txt``); every one goes through the real sanitizer
(nh3), and what comes out is read back with an HTML parser and checked
element by element.
"""

import base64
import random
import re
import urllib.parse
from email.message import EmailMessage
from email.policy import SMTP
from html.parser import HTMLParser
from pathlib import Path

import pytest

from maildesk_mail_client.application.html_safety import safe_html, text_to_html
from maildesk_mail_client.application.message_view import PartNotFound, parse_message, part_bytes

from .test_malformed_mime_corpus import corpus_messages, fuzzed_messages

XSS_VECTORS = Path(__file__).parent / "data" / "xss_vectors.txt"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def cid_url(content_id):
    return f"/maildesk/message/7/cid/{urllib.parse.quote(content_id, safe='')}"


# -- building messages as clients send them -------------------------------------------


def alternative_message():
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Alice Doe <alice@example.com>"
    msg["To"] = "Bob <bob@example.com>, carol@example.com"
    msg["Cc"] = "=?utf-8?q?Dani=C3=A8le?= <daniele@example.com>"
    msg["Subject"] = "=?utf-8?b?UmVwb3J0IOKAkyBRMg==?="
    msg["Date"] = "Tue, 14 May 2024 09:30:00 +0200"
    msg["Message-ID"] = "<alt@example.com>"
    msg.set_content("Hello Bob,\nthe report: https://example.com/q2\n> you wrote\n> earlier\nAlice\n")
    msg.add_alternative(
        '<html><head><style>p{color:#333}</style></head><body><p>Hello <b>Bob</b></p>'
        '<img src="cid:logo@example.com" alt="logo"><img src="http://tracker.example/p.gif" width="1"></body></html>',
        subtype="html")
    html_part = msg.get_payload()[1]
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@example.com>", filename="logo.png",
                          disposition="inline")
    msg.add_attachment(b"%PDF-1.4 report" * 1000, maintype="application", subtype="pdf", filename="Q2 report.pdf")
    msg.add_attachment("Grüße".encode() * 10, maintype="text", subtype="csv",
                       filename="données.csv")
    return msg.as_bytes()


def forwarded_message():
    inner = EmailMessage(policy=SMTP)
    inner["From"] = "Original Sender <orig@example.org>"
    inner["To"] = "alice@example.com"
    inner["Subject"] = "The original"
    inner["Date"] = "Mon, 13 May 2024 08:00:00 -0000"
    inner.set_content("Original text")
    inner.add_alternative('<p>Original <img src="cid:inner@x"></p>', subtype="html")
    inner.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<inner@x>")
    inner.add_attachment(b"inner attachment", maintype="application", subtype="octet-stream",
                         filename="inner.bin")
    outer = EmailMessage(policy=SMTP)
    outer["From"] = "alice@example.com"
    outer["To"] = "bob@example.com"
    outer["Subject"] = "Fwd: The original"
    outer.set_content("See the forwarded message.")
    outer.add_attachment(inner)
    return outer.as_bytes()


# -- MIME -----------------------------------------------------------------------------


def test_alternatives_headers_and_attachments():
    raw = alternative_message()
    view = parse_message(raw)
    assert view.subject == "Report \u2013 Q2"
    assert view.from_ == "Alice Doe <alice@example.com>"
    assert view.to == "Bob <bob@example.com>, carol@example.com"
    assert view.cc == "Danièle <daniele@example.com>"
    assert view.date.isoformat() == "2024-05-14T07:30:00"  # naive UTC
    assert view.date.tzinfo is None
    assert view.text.startswith("Hello Bob,\nthe report: https://example.com/q2")
    assert "<b>Bob</b>" in view.html and 'src="cid:logo@example.com"' in view.html
    parts = {part.part_id: part for part in view.attachments}
    assert set(parts) == {"1.2.2", "2", "3"}
    logo = parts["1.2.2"]
    assert (logo.content_type, logo.content_id, logo.inline, logo.size) == (
        "image/png", "logo@example.com", True, len(PNG))
    pdf = parts["2"]
    assert (pdf.filename, pdf.content_type, pdf.size, pdf.inline) == (
        "Q2 report.pdf", "application/pdf", len(b"%PDF-1.4 report") * 1000, False)
    assert parts["3"].filename == "données.csv"
    assert part_bytes(raw, "2") == ("application/pdf", "Q2 report.pdf", b"%PDF-1.4 report" * 1000)
    assert part_bytes(raw, "1.2.2")[2] == PNG
    assert view.by_content_id("<logo@example.com>") is logo


def test_part_ids_follow_imap_numbering_and_unknown_parts_are_refused():
    raw = alternative_message()
    # 1 = multipart/alternative, 1.1 = text/plain, 1.2 = multipart/related, 1.2.1 = text/html
    assert part_bytes(raw, "1.1")[0] == "text/plain"
    assert part_bytes(raw, "1.2.1")[0] == "text/html"
    for bad in ("0", "4", "1.3", "1.2.2.1", "", "a", "1..2", "../1", "1" * 40):
        with pytest.raises(PartNotFound):
            part_bytes(raw, bad)
    with pytest.raises(PartNotFound):
        part_bytes(raw, "1")  # a container, not a part one can download
    single = b"From: a@b.c\r\nSubject: one\r\n\r\njust text\r\n"
    assert parse_message(single).text == "just text\n"
    assert parse_message(single).attachments == ()
    assert part_bytes(single, "1")[2] == b"just text\r\n"


def test_nested_message_is_an_attachment_that_opens():
    raw = forwarded_message()
    outer = parse_message(raw)
    assert outer.text == "See the forwarded message.\n"
    (forwarded,) = outer.attachments
    assert forwarded.part_id == "2"
    assert forwarded.content_type == "message/rfc822" and forwarded.is_message
    assert forwarded.filename == "The original.eml"
    content_type, _name, data = part_bytes(raw, "2")
    assert content_type == "message/rfc822" and forwarded.size == len(data)

    # opened in place: its parts keep the outer message's numbering
    inner = parse_message(raw, "2")
    assert inner.subject == "The original"
    assert inner.from_ == "Original Sender <orig@example.org>"
    assert inner.date.isoformat() == "2024-05-13T08:00:00"
    assert inner.text == "Original text\n" and "Original" in inner.html
    ids = {part.part_id: part for part in inner.attachments}
    assert set(ids) == {"2.1.2.2", "2.2"}
    assert part_bytes(raw, "2.2")[2] == b"inner attachment"
    assert part_bytes(raw, "2.1.2.2")[2] == PNG
    assert inner.by_content_id("inner@x").part_id == "2.1.2.2"

    # or opened from its own bytes
    alone = parse_message(data)
    assert alone.subject == "The original"
    assert {part.part_id for part in alone.attachments} == {"1.2.2", "2"}

    with pytest.raises(PartNotFound):
        parse_message(raw, "1")  # the text body is not a message


def test_charsets_and_encodings():
    latin = (b"From: x@y.z\r\nSubject: =?iso-8859-1?q?caf=E9?=\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"caf=E9 cr=E8me\r\n")
    view = parse_message(latin)
    assert view.subject == "café" and view.text == "café crème\n"
    bogus = (b"From: x@y.z\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=base64\r\n\r\n"
             b"caf\xc3\xa9\r\n")
    assert parse_message(bogus).text == "café\n"  # "base64" is a codec, not a charset
    unknown = b"Content-Type: text/html; charset=x-unknown\r\n\r\n<p>caf\xe9</p>\r\n"
    assert parse_message(unknown).html == "<p>café</p>\n"  # not UTF-8: read as Windows-1252


# -- never raises ------------------------------------------------------------------------


def _mime_fuzz(seed=4242, count=300):
    """Broken MIME structure: bad boundaries, deep nesting, bad transfer encodings, truncations."""
    rng = random.Random(seed)
    base = [alternative_message(), forwarded_message()]
    messages = []
    for number in range(count):
        kind = rng.randrange(6)
        if kind == 0:  # a byte-level mutation of a good message
            raw = bytearray(rng.choice(base))
            for _ in range(rng.randint(1, 40)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            raw = bytes(raw)
        elif kind == 1:  # truncated anywhere
            good = rng.choice(base)
            raw = good[:rng.randrange(len(good))]
        elif kind == 2:  # deep nesting, unclosed
            depth = rng.randint(20, 120)
            raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
            for level in range(depth):
                raw += (b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (level, level + 1))
            raw += b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % depth
        elif kind == 3:  # message/rfc822 holding garbage, in odd encodings
            cte = rng.choice([b"base64", b"quoted-printable", b"x-uuencode", b"7bit", b"binary"])
            raw = (b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: message/rfc822\r\n"
                   b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + bytes(rng.randrange(256) for _ in range(300))
                   + b"\r\n--zz--\r\n")
        elif kind == 4:  # odd headers on parts
            raw = (b"Content-Type: multipart/alternative; boundary=\"q\"\r\n\r\n--q\r\n"
                   b"Content-Type: " + rng.choice([b"text", b"text/", b"/html", b"text/html; charset=\"",
                                                  b"text/html; charset=utf-16", b"image/png; name*=utf-8''%ff%fe"])
                   + b"\r\nContent-Disposition: " + rng.choice([b"attachment; filename=", b"inline; filename*=x'y'z",
                                                                 b"attachment; filename=\"../../etc/passwd\"",
                                                                 b"\x00", b"attachment; filename=\"a\x00b\r\n c\""])
                   + b"\r\nContent-ID: " + rng.choice([b"<>", b"<a@b", b"", b"\xff\xfe"])
                   + b"\r\nContent-Transfer-Encoding: " + rng.choice([b"base64", b"quoted-printable", b"bogus"])
                   + b"\r\n\r\n" + rng.choice([b"!!!not base64", b"=ZZ=\r\n", b"PGI+aGk8L2I+", b""]) + b"\r\n--q--\r\n")
        else:  # random bytes, with or without a header-looking start
            raw = rng.choice([b"", b"Content-Type: multipart/mixed\r\n\r\n"]) + bytes(
                rng.randrange(256) for _ in range(rng.randint(0, 2000)))
        messages.append((f"mime fuzz {number} (seed {seed})", raw))
    return messages


def _read_everything(raw):
    view = parse_message(raw)
    view.headers()
    if view.html:
        safe_html(view.html, lambda _cid: "/x")
    text_to_html(view.text)
    for part in view.attachments:
        content_type, filename, data = part_bytes(raw, part.part_id)
        assert isinstance(data, bytes) and filename and "/" not in filename and "\x00" not in filename
        if part.is_message:
            parse_message(raw, part.part_id)
            parse_message(data)
    return view


def test_malformed_mail_never_raises():
    messages = corpus_messages() + fuzzed_messages() + _mime_fuzz()
    assert len(messages) > 500
    failures = []
    for name, raw in messages:
        try:
            _read_everything(raw)
        except Exception as error:  # the point of the test: name every message that raised
            failures.append(f"{name}: {error!r}")
    assert failures == []


def test_corpus_messages_keep_their_parts():
    """The corpus's multipart messages: every leaf is either a body or a listed part."""
    seen_multipart = 0
    for _name, raw in corpus_messages():
        view = parse_message(raw)
        if b"multipart/" in raw.lower() and view.attachments:
            seen_multipart += 1
        for part in view.attachments:
            assert re.fullmatch(r"[1-9][0-9]*(\.[1-9][0-9]*)*", part.part_id)
            assert part.size >= 0
    assert seen_multipart >= 5


# -- hostile HTML ---------------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every element of the sanitized output with its attributes, and the text of <style> blocks."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements, self.styles, self._in_style = [], [], False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def elements(html):
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


FORBIDDEN_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input", "button",
                  "select", "textarea", "meta", "link", "base", "svg", "math", "template", "noscript", "isindex",
                  "video", "audio", "source", "picture", "area", "map", "marquee", "xmp", "animate", "foreignobject"}
URL_ATTRIBUTES = {"href", "src", "srcset", "background", "action", "formaction", "poster", "data", "xlink:href",
                  "code", "codebase", "cite", "longdesc", "usemap", "dynsrc", "lowsrc"}
OUR_CID = re.compile(r"/maildesk/message/7/cid/[^\"'\s]+")


def vectors():
    lines = XSS_VECTORS.read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def assert_harmless(html, allow_remote=False):
    found = elements(html)
    for tag, attrs in found.elements:
        assert tag not in FORBIDDEN_TAGS, f"<{tag}> survived"
        for name, value in attrs.items():
            value = value or ""
            assert not name.startswith("on"), f"{name} on <{tag}> survived"
            lowered = re.sub(r"[\x00-\x20]", "", value).lower()
            assert "javascript:" not in lowered and "vbscript:" not in lowered, f"{name}={value!r}"
            if name in URL_ATTRIBUTES:
                assert name in ("href", "src", "srcset", "background"), f"{name} on <{tag}> survived"
                if name == "href":
                    assert tag == "a" and re.match(r"(https?:|mailto:|tel:)", value), value
                else:
                    candidates = [c.strip().split(" ")[0] for c in value.split(",")] if name == "srcset" else [value]
                    for url in candidates:
                        assert (OUR_CID.fullmatch(url) or re.match(r"data:image/(png|gif|jpe?g|webp|bmp);", url)
                                or (allow_remote and re.match(r"https?://", url))), f"{name}={value!r} on <{tag}>"
            if name == "style":
                assert_css_harmless(value, allow_remote)
        if tag == "a":
            assert attrs.get("target") == "_blank"
            assert set((attrs.get("rel") or "").split()) >= {"noopener", "noreferrer"}
            assert attrs.get("referrerpolicy") == "no-referrer"
    for css in found.styles:
        assert_css_harmless(css, allow_remote)
        assert "<" not in css


def assert_css_harmless(css, allow_remote):
    lowered = css.lower()
    for banned in ("expression", "javascript", "vbscript", "behavior", "binding", "@import", "@font-face",
                   "image-set", "\\"):
        assert banned not in lowered, f"{banned} in {css!r}"
    for url in re.findall(r"url\(([^)]*)\)", lowered):
        url = url.strip("\"' ")
        assert OUR_CID.fullmatch(url) or url.startswith("data:image/") or (
            allow_remote and re.match(r"https?://", url)), url


@pytest.mark.parametrize("allow_remote", [False, True], ids=["blocked", "remote-allowed"])
def test_no_xss_vector_survives(allow_remote):
    all_vectors = vectors()
    assert len(all_vectors) >= 60
    for vector in all_vectors:
        cleaned, blocked = safe_html(vector, cid_url, allow_remote)
        assert_harmless(cleaned, allow_remote)
        if allow_remote:
            assert blocked == 0
    # one document holding all of them at once, as a single hostile message would
    everything, _ = safe_html("\n".join(all_vectors), cid_url, allow_remote)
    assert_harmless(everything, allow_remote)
    if not allow_remote:
        assert "evil.example" not in everything and "xss.example" not in everything


def test_harmless_content_is_kept():
    html = ('<div style="color: red; margin: 0 auto; background: #fff"><p align="center">Hi <b>there</b></p>'
            '<table width="100%" cellpadding="4"><tr><td bgcolor="#eee" colspan="2">cell</td></tr></table>'
            '<a href="https://example.com/x?a=1&amp;b=2">link</a> <a href="mailto:bob@example.com">mail</a>'
            '<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline data"></div>'
            '<style>@media (max-width: 600px) { .col { width: 100% !important } } p { font-family: "Arial" }</style>')
    cleaned, blocked = safe_html(html, cid_url)
    assert blocked == 0
    found = elements(cleaned)
    tags = [tag for tag, _ in found.elements]
    assert {"div", "p", "b", "table", "td", "a", "img", "style"} <= set(tags)
    div = dict(found.elements)["div"]
    assert div["style"] == "color: red; margin: 0 auto; background: #fff"
    links = [attrs for tag, attrs in found.elements if tag == "a"]
    assert [link["href"] for link in links] == ["https://example.com/x?a=1&b=2", "mailto:bob@example.com"]
    assert all(link["target"] == "_blank" and "noopener" in link["rel"] for link in links)
    assert dict(found.elements)["img"]["src"].startswith("data:image/png;base64,")
    assert "@media (max-width: 600px)" in found.styles[0] and "width: 100% !important" in found.styles[0]
    assert 'font-family: "Arial"' in found.styles[0]


def test_remote_resources_are_removed_and_counted():
    html = ('<img src="http://tracker.example/open.gif?u=1" width="1">'
            '<img srcset="https://cdn.example/a.png 1x, https://cdn.example/b.png 2x">'
            '<table background="https://cdn.example/bg.png"><tr><td>x</td></tr></table>'
            '<div style="color: blue; background-image: url(https://cdn.example/d.png)">d</div>'
            '<link rel="stylesheet" href="https://cdn.example/s.css">'
            '<style>@import url("https://cdn.example/i.css"); p { background: url(//cdn.example/p.png) }</style>'
            '<img src="cid:logo@example.com"><img src="cid:nobody@example.com"><img src="/web/image/1">')
    cleaned, blocked = safe_html(html, lambda cid: cid_url(cid) if cid == "logo@example.com" else None)
    assert blocked == 7  # img, srcset, background, CSS url() in style and in <style>, <link>, @import
    assert "cdn.example" not in cleaned and "tracker.example" not in cleaned
    found = elements(cleaned)
    sources = [attrs.get("src") for tag, attrs in found.elements if tag == "img"]
    assert sources == [None, None, "/maildesk/message/7/cid/logo%40example.com", None, None]
    assert dict(found.elements)["div"]["style"] == "color: blue; background-image: none"
    assert_harmless(cleaned)

    shown, blocked = safe_html(html, lambda cid: cid_url(cid) if cid == "logo@example.com" else None,
                               allow_remote=True)
    assert blocked == 0
    found = elements(shown)
    sources = [attrs.get("src") for tag, attrs in found.elements if tag == "img"]
    assert sources == ["http://tracker.example/open.gif?u=1", None, "/maildesk/message/7/cid/logo%40example.com",
                       None, None]
    srcset = [attrs["srcset"] for tag, attrs in found.elements if "srcset" in attrs]
    assert srcset == ["https://cdn.example/a.png 1x, https://cdn.example/b.png 2x"]
    assert 'url("https://cdn.example/d.png")' in dict(found.elements)["div"]["style"]
    assert 'url("https://cdn.example/p.png")' in found.styles[0]
    assert "s.css" not in shown and "i.css" not in shown  # stylesheets never come through
    assert_harmless(shown, allow_remote=True)


def test_rendered_message_uses_its_own_inline_images():
    raw = alternative_message()
    view = parse_message(raw)
    part = view.by_content_id("logo@example.com")
    cleaned, blocked = safe_html(view.html, lambda cid: cid_url(cid) if view.by_content_id(cid) else None)
    assert blocked == 1  # the tracking pixel
    assert f'src="{cid_url(part.content_id)}"' in cleaned
    assert "<style>p{color: #333}</style>" in cleaned


def test_plain_text_links_and_folded_quotes():
    text = ("Hi,\nsee https://example.com/a?b=1&c=2. Or www.example.org!\n"
            "> you wrote <script>alert(1)</script>\n> javascript:alert(1)\n>> older\nthanks, bob@example.com\n")
    html = text_to_html(text)
    assert_harmless(html)
    found = elements(html)
    links = [attrs["href"] for tag, attrs in found.elements if tag == "a"]
    assert links == ["https://example.com/a?b=1&c=2", "https://www.example.org", "mailto:bob@example.com"]
    assert [tag for tag, _ in found.elements].count("details") == 1
    assert "&lt;script&gt;" in html and "<script" not in html
    assert "3 quoted lines" in html


# -- one part, streamed -------------------------------------------------------------------


def _big_message(data, cte="base64"):
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "alice@example.com"
    msg["Subject"] = "big"
    msg.set_content("See attached.")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename="big.bin", cte=cte)
    return msg.as_bytes()


def test_a_20_mb_attachment_streams_in_small_memory():
    import hashlib
    import tracemalloc

    from maildesk_mail_client.application.message_view import open_part

    data = random.Random(7).randbytes(20 * 1024 * 1024)
    raw = _big_message(data)
    listed = parse_message(raw).part("2").as_dict()
    assert listed["size"] == len(data)  # the list's size, counted without decoding
    digest = hashlib.sha256()
    received = 0
    tracemalloc.start()
    try:
        part = open_part(raw, "2", listed)
        assert (part.content_type, part.filename, part.size) == ("application/octet-stream", "big.bin", len(data))
        for chunk in part.chunks:
            assert len(chunk) <= 64 * 1024
            digest.update(chunk)
            received += len(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == len(data)
    assert digest.digest() == hashlib.sha256(data).digest()
    assert peak < len(data) // 20, peak  # about 1 MB, where the whole part is 20 MB (2x: 40 MB)


def _streamed(raw, part_id, listed=None):
    from maildesk_mail_client.application.message_view import open_part

    part = open_part(raw, part_id, listed)
    data = b"".join(part.chunks)
    assert len(data) == part.size  # what Content-Length says
    return part, data


@pytest.mark.parametrize("cte", ["base64", "quoted-printable", "7bit", "8bit"])
def test_streamed_part_is_the_decoded_part(cte):
    if cte == "base64":
        data = random.Random(3).randbytes(300_001)
    else:
        word = "Grusse" if cte == "7bit" else "Grüße"
        data = "".join(f"{word}, line {number} " + "=x" * (number % 60) + "\n" for number in range(20_000)).encode()
    raw = _big_message(data, cte=cte) if cte == "base64" else None
    if raw is None:
        msg = EmailMessage(policy=SMTP)
        msg["Subject"] = "text"
        msg.set_content("body")
        msg.add_attachment(data.decode("utf-8", "replace"), subtype="plain", filename="a.txt", cte=cte)
        raw = msg.as_bytes()
    view = parse_message(raw)
    listed = view.part("2")
    content_type, filename, expected = part_bytes(raw, "2")
    assert listed.size == len(expected)
    for given in (listed.as_dict(), None):
        part, got = _streamed(raw, "2", given)
        assert got == expected and (part.content_type, part.filename) == (content_type, filename)


def test_streamed_parts_match_the_parser_on_every_message():
    """Well-formed and malformed: a part streamed as the list describes it is what the parser decodes."""
    messages = [("alternative", alternative_message()), ("forwarded", forwarded_message()), *corpus_messages()]
    checked = 0
    for name, raw in messages:
        for part in parse_message(raw).attachments:
            content_type, filename, expected = part_bytes(raw, part.part_id)
            streamed, got = _streamed(raw, part.part_id, part.as_dict())
            assert (streamed.content_type, streamed.filename) == (content_type, filename), name
            if not part.is_message:  # a message part is the message as it was sent
                assert got == expected and part.size == len(expected), (name, part.part_id)
            checked += 1
    assert checked > 50
    # whatever the bytes, a part streams (or is not found) without raising anything else
    for _name, raw in fuzzed_messages() + _mime_fuzz():
        for part in parse_message(raw).attachments:
            _streamed(raw, part.part_id, part.as_dict())


def test_nested_parts_stream_without_a_listing():
    raw = forwarded_message()
    assert _streamed(raw, "2.2")[1] == b"inner attachment"
    assert _streamed(raw, "2.1.2.2")[1] == PNG
    part, data = _streamed(raw, "2")
    assert part.content_type == "message/rfc822" and parse_message(data).subject == "The original"
    for bad in ("9", "1.5", "x", "2.9"):
        with pytest.raises(PartNotFound):
            _streamed(raw, bad)
