"""A message as the reading pane shows it: headers, the bodies, and the other parts.

``parse_message(raw)`` reads RFC 5322 bytes with the ``email`` package and
``policy.default``; it never raises, whatever the bytes: a header that cannot
be parsed falls back to its raw text, a body in a charset nothing knows is
read as UTF-8 (with replacement characters), and a part that cannot be read
is listed with what could be learnt of it.

Parts are numbered as IMAP's BODYSTRUCTURE does (RFC 3501 §6.4.5): the
children of a multipart are ``1``, ``2``, … below their parent's number; a
single-part message's body is ``1``; the message inside a ``message/rfc822``
part ``2`` has its parts below ``2`` (``2.1``, ``2.2``, or ``2.1`` alone when
it is single-part). The numbers depend only on the message's structure, so
a URL naming a part stays right for as long as the message exists.

A nested ``message/rfc822`` is listed as an attachment; it opens as a view of
its own with ``parse_message(raw, part_id)`` (ids stay those of the outer
message) or ``parse_message(part_bytes(raw, part_id)[2])``.

The HTML is returned as the sender wrote it: it is hostile, and only
``html_safety.safe_html`` makes it fit to show.
"""

from __future__ import annotations

import binascii
import codecs
import dataclasses
import datetime as dt
import email
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import itertools
import logging
import mimetypes
import re
from collections.abc import Iterable, Iterator
from email.generator import BytesGenerator
from io import BytesIO

_logger = logging.getLogger(__name__)

#: container types whose part can be opened as a message of its own
MESSAGE_TYPES = ("message/rfc822", "message/global")

# Read the source as it came: no refolding when a part is written out again.
_WRITE_POLICY = email.policy.default.clone(refold_source="none", max_line_length=0, linesep="\r\n")
_COMPAT_WRITE_POLICY = email.policy.compat32.clone(max_line_length=0, linesep="\r\n")
_BAD_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]+")
_SPACES = re.compile(r"\s+")


@dataclasses.dataclass(frozen=True)
class Part:
    """A part of the message other than the bodies shown: an attachment, an inline image, a message."""

    part_id: str
    filename: str
    size: int
    content_type: str
    content_id: str | None
    inline: bool

    @property
    def is_message(self) -> bool:
        return self.content_type in MESSAGE_TYPES

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MessageView:
    subject: str
    from_: str
    to: str
    cc: str
    date: dt.datetime | None  # naive UTC
    html: str | None  # as the sender wrote it: unsafe
    text: str | None
    attachments: tuple[Part, ...] = ()
    defects: tuple[str, ...] = ()  # what could not be read, for the logs

    def part(self, part_id: str) -> Part | None:
        return next((part for part in self.attachments if part.part_id == part_id), None)

    def by_content_id(self, content_id: str) -> Part | None:
        wanted = _clean_content_id(content_id)
        return next((part for part in self.attachments if part.content_id == wanted), None) if wanted else None

    def headers(self) -> dict:
        """The headers as the reading pane shows them (JSON-ready)."""
        return {"subject": self.subject, "from": self.from_, "to": self.to, "cc": self.cc,
                "date": self.date.isoformat(sep=" ") if self.date else None}


class PartNotFound(LookupError):
    """No part of the message has this id."""


# -- parsing ---------------------------------------------------------------------


def _parse(raw: bytes):
    return email.message_from_bytes(bytes(raw or b""), policy=email.policy.default)


def parse_message(raw: bytes, part_id: str | None = None) -> MessageView:
    """The view of ``raw``, or of the message inside its ``message/rfc822`` part ``part_id``.

    Never raises for what the message holds; :class:`PartNotFound` when
    ``part_id`` names no message part.
    """
    root = _parse(raw)
    prefix = ""
    if part_id:
        node = _find(root, part_id)
        inner = _inner_message(node)
        if inner is None:
            raise PartNotFound(part_id)
        root, prefix = inner, part_id
    return _view(root, prefix)


def _view(msg, prefix: str) -> MessageView:
    defects = []
    leaves = list(_leaves(msg, prefix))
    html_node = _body_node(msg, "html", defects)
    text_node = _body_node(msg, "plain", defects)
    html = _text_content(html_node, defects) if html_node is not None else None
    text = _text_content(text_node, defects) if text_node is not None else None
    body_nodes = {id(node) for node in (html_node, text_node) if node is not None}
    attachments = tuple(
        _describe(node, number, defects) for number, node in leaves if id(node) not in body_nodes
    )
    return MessageView(
        subject=_header_text(msg, "subject", defects),
        from_=_header_text(msg, "from", defects),
        to=_header_text(msg, "to", defects),
        cc=_header_text(msg, "cc", defects),
        date=_header_date(msg, defects),
        html=html,
        text=text,
        attachments=attachments,
        defects=tuple(defects),
    )


def _children(node):
    """The numbered children of a container: a multipart's parts, or a message/rfc822's message."""
    if _inner_message(node) is not None:
        inner = _inner_message(node)
        return _children(inner) if _is_multipart(inner) else [inner]
    if _is_multipart(node):
        payload = node.get_payload()
        return [child for child in payload if isinstance(child, email.message.Message)] \
            if isinstance(payload, list) else []
    return []


def _is_multipart(node) -> bool:
    return node.get_content_maintype() == "multipart" and isinstance(node.get_payload(), list)


def _inner_message(node):
    """The message inside a message/rfc822 (or message/global) part, or None."""
    if node.get_content_type() not in MESSAGE_TYPES:
        return None
    payload = node.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        return payload[0]
    if isinstance(payload, str | bytes) and node.get_content_type() == "message/global":
        data = node.get_payload(decode=True) or b""
        return _parse(data)
    return None


def _number(prefix: str, index: int) -> str:
    return f"{prefix}.{index}" if prefix else str(index)


def _leaves(msg, prefix: str):
    """(part id, part) of every leaf, a message/rfc822 counting as a leaf, in walk order."""
    if not _is_multipart(msg):
        yield _number(prefix, 1), msg
    else:
        yield from _leaves_below(prefix, msg)


def _leaves_below(number: str, node):
    for index, child in enumerate(_children(node), 1):
        child_number = _number(number, index)
        if _is_multipart(child):
            yield from _leaves_below(child_number, child)
        else:
            yield child_number, child


def _find(msg, part_id: str):
    """The part numbered ``part_id`` (see the module's docstring)."""
    if not re.fullmatch(r"[1-9][0-9]{0,4}(\.[1-9][0-9]{0,4}){0,30}", part_id or ""):
        raise PartNotFound(part_id)
    steps = [int(step) for step in part_id.split(".")]
    node = msg
    if not _is_multipart(msg):
        if steps[0] != 1:
            raise PartNotFound(part_id)
        steps = steps[1:]  # the body of a single-part message is part 1: the message itself
    for step in steps:
        children = _children(node)
        if step > len(children):
            raise PartNotFound(part_id)
        node = children[step - 1]
    return node


def _body_node(msg, subtype: str, defects):
    try:
        node = msg.get_body(preferencelist=(subtype,))
    except Exception as error:  # a malformed structure must not cost the message
        defects.append(f"body ({subtype}): {error!r}")
        return None
    if node is None or node.get_content_type() != f"text/{subtype}":
        return None
    return node


# -- reading values ----------------------------------------------------------------


def _charset_codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset.strip().strip('"').lower())
    except (LookupError, ValueError, TypeError):
        return None
    # "base64", "zlib", "rot13" are codecs but not charsets
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    codec = _charset_codec(charset)
    if codec:
        try:
            return data.decode(codec, errors="replace")
        except Exception:  # some codecs raise even with errors="replace"
            _logger.debug("charset %r failed on a body", charset)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _payload_bytes(node) -> bytes:
    """The decoded payload of a leaf (base64 and quoted-printable undone, leniently)."""
    try:
        data = node.get_payload(decode=True)
    except Exception:
        data = None
    if data is None:
        payload = node.get_payload()
        if isinstance(payload, str):
            return payload.encode("utf-8", errors="surrogateescape")
        if isinstance(payload, list | email.message.Message):
            return _message_bytes(node)
        return b""
    return data


def _text_content(node, defects) -> str:
    try:
        charset = node.get_content_charset()
    except Exception:
        charset = None
    text = _decode_bytes(_payload_bytes(node), charset)
    return text.replace("\r\n", "\n").replace("\x00", "")


def _message_bytes(node) -> bytes:
    """A part written out as bytes (a message/rfc822's message, without its part headers)."""
    target = _inner_message(node) if _inner_message(node) is not None else node
    for policy in (_WRITE_POLICY, _COMPAT_WRITE_POLICY):
        buffer = BytesIO()
        try:
            BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(target)
            return buffer.getvalue()
        except Exception as error:
            _logger.debug("writing a part out failed with %r", error)
    return b""


def _header_text(msg, name: str, defects) -> str:
    try:
        value = msg.get(name)
        text = str(value) if value is not None else ""
    except Exception as error:  # policy.default failed on it: decode the raw value by hand
        defects.append(f"{name}: {error!r}")
        text = _raw_header(msg, name)
    return _clean_text(text)


def _raw_header(msg, name: str) -> str:
    for key, value in getattr(msg, "_headers", ()):
        if key.lower() == name:
            raw = value if isinstance(value, str) else str(value)
            try:
                parts = email.header.decode_header(raw)
                return "".join(_decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
                               for chunk, charset in parts)
            except Exception:
                return raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return ""


def _clean_text(text: str) -> str:
    text = text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return _SPACES.sub(" ", text.replace("\x00", "")).strip()


def _header_date(msg, defects) -> dt.datetime | None:
    try:
        value = msg.get("date")
        when = getattr(value, "datetime", None)
    except Exception as error:
        defects.append(f"date: {error!r}")
        when = None
    if when is None:
        try:
            when = email.utils.parsedate_to_datetime(_raw_header(msg, "date"))
        except Exception:
            return None
    try:
        if when.tzinfo is not None:
            when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return None
    return when


def _clean_content_id(value) -> str | None:
    if not value:
        return None
    text = str(value).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    text = text.strip()
    return text or None


def _content_id(node) -> str | None:
    try:
        return _clean_content_id(node.get("content-id"))
    except Exception:
        return _clean_content_id(_raw_header(node, "content-id"))


def _filename(node, number: str, content_type: str, inner=None) -> str:
    """The part's file name; ``inner``: the headers of the message a message part holds, when known."""
    try:
        name = node.get_filename()
    except Exception:
        name = None
    inner = inner if inner is not None else _inner_message(node)
    if not name and inner is not None:
        name = _header_text(inner, "subject", [])
        name = f"{name[:80]}.eml" if name else None
    name = _BAD_FILENAME.sub("_", _clean_text(name or "")).strip(" .")
    if not name:
        extension = ".eml" if content_type in MESSAGE_TYPES else (mimetypes.guess_extension(content_type) or ".bin")
        name = f"part-{number}{extension}"
    return name[:255]


def _describe(node, number: str, defects) -> Part:
    try:
        content_type = node.get_content_type()
    except Exception:
        content_type = "application/octet-stream"
    try:
        disposition = node.get_content_disposition()
    except Exception:
        disposition = None
    content_id = _content_id(node)
    size = len(_message_bytes(node)) if content_type in MESSAGE_TYPES else _leaf_size(node)
    inline = disposition == "inline" or (disposition is None and content_id is not None)
    return Part(part_id=number, filename=_filename(node, number, content_type), size=size,
                content_type=content_type, content_id=content_id, inline=inline)


# -- one part's bytes ----------------------------------------------------------------


def part_bytes(raw: bytes, part_id: str) -> tuple[str, str, bytes]:
    """(content type, file name, decoded bytes) of part ``part_id``; a message part gives the message.

    Raises :class:`PartNotFound` when the message has no such part.
    """
    root = _parse(raw)
    node = _find(root, part_id)
    if _is_multipart(node) and _inner_message(node) is None:
        raise PartNotFound(part_id)  # a container is not something to download
    content_type = node.get_content_type()
    data = _message_bytes(node) if content_type in MESSAGE_TYPES else _payload_bytes(node)
    return content_type, _filename(node, part_id, content_type), data


def content_id_part(raw: bytes, content_id: str, part_id: str | None = None) -> Part | None:
    """The part of the message (or of its nested message ``part_id``) with this Content-ID."""
    try:
        view = parse_message(raw, part_id)
    except PartNotFound:
        return None
    return view.by_content_id(content_id)


def clean_content_id(value) -> str | None:
    """A Content-ID as parts are listed with (no angle brackets, no spaces around), or None."""
    return _clean_content_id(value)


# -- one part, streamed ----------------------------------------------------------------
#
# A download reads the part's body straight out of the raw message: its MIME boundaries are
# found in the bytes (the email package parses the headers only), and the transfer encoding
# is undone CHUNK bytes at a time. Neither the message nor the part is ever held parsed or
# decoded in memory as a whole. When the boundaries do not give a structure this reading is
# sure of (a malformed message), or what they give is not the part the list describes, the
# part is taken from the email package's parse instead, as the list was (then still decoded
# chunk by chunk from its encoded text).

#: encoded bytes read at a time: a multiple of 4, so base64 stays aligned on its 4-character groups
CHUNK = 64 * 1024
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_B64 = bytes(sorted(set(range(256)) - set(_B64_ALPHABET)))
_UUENCODED = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_BLANK_LINE = re.compile(rb"\n\r?\n")
_HEADER_PARSER = email.parser.BytesParser(policy=email.policy.default)


@dataclasses.dataclass
class PartStream:
    """One part, ready to send: ``chunks`` yields its decoded bytes, ``size`` of them in all."""

    part_id: str
    content_type: str
    filename: str
    size: int
    chunks: Iterator[bytes]


def _encoded_chunks(payload, size: int = CHUNK) -> Iterator[bytes]:
    """``payload`` (the parser's str, bytes or a memoryview of the raw message) as bytes, ``size`` at a time."""
    for start in range(0, len(payload), size):
        chunk = payload[start:start + size]
        # the parser keeps undecodable bytes as surrogates: encoding gives them back as they were
        yield chunk.encode("utf-8", errors="surrogateescape") if isinstance(chunk, str) else bytes(chunk)


def _base64_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        data = carry + chunk.translate(None, _NOT_B64)  # line breaks, padding and junk out
        cut = len(data) - len(data) % 4
        carry = data[cut:]
        if cut:
            yield binascii.a2b_base64(data[:cut])
    if len(carry) >= 2:  # unpadded end (a single character left carries no byte)
        yield binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))


def _qp_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        cut = data.rfind(b"\n") + 1  # whole lines: a soft line break or an =XX stays in one piece
        if not cut and len(data) > 4 * CHUNK:  # one endless line: cut it, but not inside an =XX
            equals = data.rfind(b"=", len(data) - 2)
            cut = equals if equals >= 0 else len(data)
        carry = data[cut:]
        if cut:
            yield binascii.a2b_qp(data[:cut])
    if carry:
        yield binascii.a2b_qp(carry)


def _decoded_chunks(chunks: Iterable[bytes], cte: str) -> Iterator[bytes]:
    if cte == "base64":
        return _base64_chunks(chunks)
    if cte == "quoted-printable":
        return _qp_chunks(chunks)
    return iter(chunks)


def _decoded_size(chunks: Iterable[bytes], cte: str) -> int:
    """How many bytes ``_decoded_chunks`` gives, without decoding base64 (4 characters are 3 bytes)."""
    if cte == "base64":
        count = sum(len(chunk.translate(None, _NOT_B64)) for chunk in chunks)
        return count // 4 * 3 + (0, 0, 1, 2)[count % 4]
    return sum(len(chunk) for chunk in _decoded_chunks(chunks, cte))


def _cte(node) -> str:
    try:
        return str(node.get("content-transfer-encoding", "")).strip().lower()
    except Exception:
        return ""


def _encoded_payload(node):
    """A leaf's body as the parser keeps it: a str, undecodable bytes as surrogates.

    Not ``get_payload()``: for a body with such bytes, it gives a copy with them replaced.
    """
    payload = getattr(node, "_payload", None)
    if isinstance(payload, str):
        return payload
    try:
        return node.get_payload()
    except Exception:
        return None


def _leaf_size(node) -> int:
    """The decoded size of a leaf, as ``_payload_bytes`` would give it, without decoding it whole."""
    payload = _encoded_payload(node)
    cte = _cte(node)
    if not isinstance(payload, str) or cte in _UUENCODED:
        return len(_payload_bytes(node))
    return _decoded_size(_encoded_chunks(payload), cte)


def _slices(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start:start + CHUNK])


# the raw message's own structure


def _entity(raw: bytes, start: int, end: int):
    """(headers as a message without body, where the body starts) of the entity raw[start:end]."""
    if raw.startswith(b"\r\n", start, end):
        body = start + 2
    elif raw.startswith(b"\n", start, end):
        body = start + 1
    else:
        blank = _BLANK_LINE.search(raw, start, end)
        body = blank.end() if blank else end
    return _HEADER_PARSER.parsebytes(raw[start:body], headersonly=True), body


def _boundary_parts(raw: bytes, boundary: str, start: int, end: int):
    """[(start, end)] of the parts of a multipart body; None unless it is well formed."""
    try:
        separator = boundary.encode("ascii", errors="surrogateescape")
    except UnicodeEncodeError:
        return None
    delimiter = re.compile(rb"^--" + re.escape(separator) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    marks = []
    for mark in delimiter.finditer(raw, start, end):
        marks.append(mark)
        if mark.group(1):
            break
    if len(marks) < 2 or not marks[-1].group(1):
        return None  # no parts, or no closing delimiter: the email package reads it its own way
    parts = []
    for opening, closing in itertools.pairwise(marks):
        first = opening.end()
        first += 2 if raw.startswith(b"\r\n", first) else 1 if raw.startswith(b"\n", first) else 0
        if first >= closing.start():
            continue  # a delimiter right after another: the email package makes no part of it
        last = closing.start()  # the line break before a delimiter is the delimiter's
        last -= 2 if raw.endswith(b"\r\n", first, last) else 1 if raw.endswith(b"\n", first, last) else 0
        parts.append((first, max(first, last)))
    return parts


def _located_children(raw: bytes, node):
    """The numbered children (headers, body start, end) of a located node: [] for a leaf, None if unsure."""
    headers, body, end = node
    try:
        content_type = headers.get_content_type()
        boundary = headers.get_boundary() if headers.get_content_maintype() == "multipart" else None
    except Exception:
        return None
    if content_type in MESSAGE_TYPES:
        inner = (*_entity(raw, body, end), end)
        children = _located_children(raw, inner)
        return None if children is None else (children or [inner])
    if content_type.startswith("message/"):
        return None  # delivery reports and such: the email package gives them shapes of their own
    if not content_type.startswith("multipart/"):
        return []
    parts = _boundary_parts(raw, boundary, body, end) if boundary else None
    if parts is None:
        return None
    return [(*_entity(raw, first, last), last) for first, last in parts]


def _sure(raw: bytes, node, depth: int = 0) -> bool:
    """Every container of the tree under ``node`` is well formed (so its numbering is the parser's)."""
    children = _located_children(raw, node)
    if children is None or depth > 40:
        return False
    return all(_sure(raw, child, depth + 1) for child in children if child is not node)


def _locate(raw: bytes, part_id: str):
    """(headers, body start, end) of part ``part_id`` read off the boundaries; None when unsure."""
    if not re.fullmatch(r"[1-9][0-9]{0,4}(\.[1-9][0-9]{0,4}){0,30}", part_id or ""):
        raise PartNotFound(part_id)
    steps = [int(step) for step in part_id.split(".")]
    node = (*_entity(raw, 0, len(raw)), len(raw))
    children = _located_children(raw, node)
    if children is None or not _sure(raw, node):
        return None
    if not children or node[0].get_content_type() in MESSAGE_TYPES:  # single part: the body is part 1
        if steps[0] != 1:
            return None
        steps = steps[1:]
    for step in steps:
        children = _located_children(raw, node)
        if not children or step > len(children):
            return None
        node = children[step - 1]
    if _located_children(raw, node) != [] and node[0].get_content_type() not in MESSAGE_TYPES:
        return None  # a container (or unsure)
    return node


def _located_stream(raw: bytes, part_id: str, node) -> PartStream:
    headers, body, end = node
    content_type = headers.get_content_type()
    encoded = memoryview(raw)[body:end]
    if content_type in MESSAGE_TYPES:
        # the message as it was sent, headers and all
        inner = _entity(raw, body, end)[0]
        return PartStream(part_id, content_type, _filename(headers, part_id, content_type, inner),
                          len(encoded), _encoded_chunks(encoded))
    cte = _cte(headers)
    return PartStream(part_id, content_type, _filename(headers, part_id, content_type),
                      _decoded_size(_encoded_chunks(encoded), cte), _decoded_chunks(_encoded_chunks(encoded), cte))


def _parsed_stream(raw: bytes, part_id: str) -> PartStream:
    """The same from the email package's parse of the whole message (what the list was made from)."""
    node = _find(_parse(raw), part_id)
    if _is_multipart(node) and _inner_message(node) is None:
        raise PartNotFound(part_id)  # a container is not something to download
    content_type = node.get_content_type()
    filename = _filename(node, part_id, content_type)
    payload = _encoded_payload(node)
    cte = _cte(node)
    if content_type in MESSAGE_TYPES or not isinstance(payload, str) or cte in _UUENCODED:
        data = _message_bytes(node) if content_type in MESSAGE_TYPES else _payload_bytes(node)
        return PartStream(part_id, content_type, filename, len(data), _slices(data))
    return PartStream(part_id, content_type, filename, _decoded_size(_encoded_chunks(payload), cte),
                      _decoded_chunks(_encoded_chunks(payload), cte))


def _as_listed(stream: PartStream, listed: dict) -> bool:
    return (stream.content_type == listed.get("content_type") and stream.filename == listed.get("filename")
            and (stream.content_type in MESSAGE_TYPES or stream.size == listed.get("size")))


def open_part(raw: bytes, part_id: str, listed: dict | None = None) -> PartStream:
    """Part ``part_id`` of ``raw``, streamed: its bytes come, decoded, as ``chunks`` is iterated.

    ``listed``: the part as the message's attachment list describes it (``Part.as_dict()``);
    the part read off the boundaries must be that one, else the whole message is parsed.
    A message part gives the message as it was sent. Raises :class:`PartNotFound`.
    """
    raw = raw if isinstance(raw, bytes) else bytes(raw or b"")
    try:
        node = _locate(raw, part_id)
    except PartNotFound:
        raise
    except Exception as error:  # whatever the bytes: the parse below is the reference
        _logger.debug("locating part %s failed with %r", part_id, error)
        node = None
    if node is not None:
        stream = _located_stream(raw, part_id, node)
        if listed is None or _as_listed(stream, listed):
            return stream
    return _parsed_stream(raw, part_id)
