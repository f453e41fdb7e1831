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

import codecs
import dataclasses
import datetime as dt
import email
import email.header
import email.message
import email.policy
import email.utils
import logging
import mimetypes
import re
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


def _filename(node, number: str, content_type: str) -> str:
    try:
        name = node.get_filename()
    except Exception:
        name = None
    if not name and _inner_message(node) is not None:
        name = _header_text(_inner_message(node), "subject", [])
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
    size = len(_message_bytes(node) if content_type in MESSAGE_TYPES else _payload_bytes(node))
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
