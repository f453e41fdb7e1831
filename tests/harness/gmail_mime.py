"""How the fake Gmail renders a stored RFC 822 message: snippet, headers, the MIME part tree.

Gmail's own quirks kept on purpose, because the adapter meets them in production:

- header values come back unfolded and with RFC 2047 encoded words decoded;
- ``metadataHeaders`` filters by name case-insensitively and keeps every
  occurrence, in message order, with the name spelled as in the message;
- the snippet is HTML-escaped (``it&#39;s``), as Gmail's is;
- ``body.data`` and ``raw`` are base64url *with* padding.

Attachments carry their data inline (``body.data``) instead of an
``attachmentId``: the fake serves no attachments endpoint.
"""

from __future__ import annotations

import base64
import email
import email.policy
import html
import re
from email.header import decode_header, make_header
from email.message import Message

SNIPPET_LENGTH = 100
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def from_b64url(text: str) -> bytes:
    """Decodes with or without padding, as Google accepts both."""
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse(raw: bytes) -> Message:
    # compat32 never raises on broken mail, so a malformed message still renders.
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def header_value(value) -> str:
    value = _FOLD.sub("", str(value))
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return value


def headers(part: Message, wanted: list[str] | None = None) -> list[dict]:
    names = {name.lower() for name in wanted} if wanted else None
    return [
        {"name": name, "value": header_value(value)}
        for name, value in part.items()
        if names is None or name.lower() in names
    ]


def _text(part: Message) -> str:
    data = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _is_attachment(part: Message) -> bool:
    return bool(part.get_filename()) or (part.get("Content-Disposition") or "").lower().startswith("attachment")


def snippet(message: Message) -> str:
    plain = html_text = None
    for part in message.walk():
        if part.is_multipart() or _is_attachment(part):
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = _text(part)
        elif kind == "text/html" and html_text is None:
            html_text = html.unescape(_TAG.sub(" ", _text(part)))
    text = plain if plain is not None else html_text or ""
    text = _SPACE.sub(" ", text).strip()[:SNIPPET_LENGTH]
    return html.escape(text, quote=True).replace("&#x27;", "&#39;")


def payload(message: Message, *, full: bool, wanted: list[str] | None = None) -> dict:
    """The ``payload`` MessagePart: headers only for format=metadata, the whole tree for format=full."""
    if not full:
        return {
            "partId": "",
            "mimeType": message.get_content_type(),
            "filename": "",
            "headers": headers(message, wanted),
        }
    return _part(message, "")


def _part(part: Message, part_id: str) -> dict:
    rendered = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": headers(part),
    }
    if part.is_multipart():
        rendered["body"] = {"size": 0}
        rendered["parts"] = [
            _part(child, f"{part_id}.{index}" if part_id else str(index))
            for index, child in enumerate(part.get_payload())
        ]
    else:
        data = part.get_payload(decode=True) or b""
        rendered["body"] = {"size": len(data), "data": b64url(data)} if data else {"size": 0}
    return rendered
