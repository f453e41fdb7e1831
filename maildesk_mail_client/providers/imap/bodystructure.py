"""What BODYSTRUCTURE (RFC 3501 §7.4.2) tells without fetching bodies.

imapclient gives a multipart as ``([children], subtype, params, ...)`` and a
leaf as ``(type, subtype, params, id, description, encoding, size, ...)``
followed by extension data whose position depends on the type. Servers may
leave extension data out, so every look-up past the basic fields is guarded.
"""

import binascii
import html
import re

from .headers import lookup_codec, squeeze

SNIPPET_CHARS = 200

_BASE64_NOISE = re.compile(rb"[^A-Za-z0-9+/]")
_INVISIBLE_HTML = re.compile(r"<(style|script|head|title)\b.*?(?:</\1\s*>|$)|<!--.*?(?:-->|$)", re.S | re.I)
_TAG = re.compile(r"<[^>]*(?:>|$)")  # (?:|$): a tag cut by the partial fetch


def has_attachments(body) -> bool:
    """Any part with ``Content-Disposition: attachment``, or a named part that is not text."""
    if _is_multipart(body):
        return any(has_attachments(part) for part in body[0])
    disposition = _disposition(body)
    if disposition and _lower(disposition[0]) == "attachment":
        return True
    if _lower(body[0]) in ("text", "multipart"):
        return False
    return _has_filename(body, disposition)


def snippet(body, part1: bytes | None) -> str | None:
    """Preview text from the first bytes of part 1, when part 1 leads to text/plain or text/html.

    When part 1 is itself a multipart (mixed > alternative > plain), its
    first child is found in those bytes by its boundary.
    """
    if not part1:
        return None
    part = body[0][0] if _is_multipart(body) else body
    while _is_multipart(part):
        part1 = _first_child(part1, _params(part, 2).get("boundary"))
        if part1 is None:
            return None
        part = part[0][0]
    subtype = _lower(part[1])
    if _lower(part[0]) != "text" or subtype not in ("plain", "html"):
        return None
    text = _decode_truncated(_undo_transfer_encoding(part1, _lower(part[5])), _params(part, 2).get("charset"))
    if subtype == "html":
        text = html.unescape(_TAG.sub(" ", _INVISIBLE_HTML.sub(" ", text)))
    return squeeze(text)[:SNIPPET_CHARS].rstrip() or None


def _is_multipart(part) -> bool:
    return isinstance(part[0], list)


def _lower(value) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return value.lower() if isinstance(value, str) else ""


def _params(part, index) -> dict[str, bytes]:
    """The ``(name value name value ...)`` list at ``index``, by lower-case name."""
    values = part[index] if len(part) > index else None
    if not isinstance(values, tuple):
        return {}
    return {_lower(name): value for name, value in zip(values[::2], values[1::2], strict=False)}


def _disposition(part):
    """``(type, (params))`` or None. It sits after the type-specific fields (§7.4.2)."""
    kind = (_lower(part[0]), _lower(part[1]))
    index = 9 if kind[0] == "text" else 11 if kind == ("message", "rfc822") else 8
    value = part[index] if len(part) > index else None
    return value if isinstance(value, tuple) and value and isinstance(value[0], bytes) else None


def _has_filename(part, disposition) -> bool:
    names = list(_params(part, 2))
    if disposition:
        names += _params(disposition, 1)
    # RFC 2231 spells long or encoded names filename*, filename*0, ...
    return any(name.startswith(("filename", "name")) for name in names)


def _first_child(data: bytes, boundary: bytes | None) -> bytes | None:
    """The content of the first part inside a multipart body, as far as ``data`` goes."""
    if not boundary:
        return None
    delimiter = b"--" + boundary
    start = data.find(delimiter)
    if start < 0:
        return None
    headers_end = data.find(b"\n\n", start)
    crlf_end = data.find(b"\r\n\r\n", start)
    if crlf_end >= 0 and (headers_end < 0 or crlf_end < headers_end):
        content = data[crlf_end + 4:]
    elif headers_end >= 0:
        content = data[headers_end + 2:]
    else:
        return None
    end = content.find(b"\n" + delimiter)
    return content[:end] if end >= 0 else content


def _undo_transfer_encoding(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        clean = _BASE64_NOISE.sub(b"", data)
        return binascii.a2b_base64(clean[:len(clean) - len(clean) % 4])  # whole quanta only: data is cut
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


def _decode_truncated(data: bytes, charset) -> str:
    """Decode bytes that may end in the middle of a character."""
    codec = lookup_codec(charset.decode("ascii", "replace")) if isinstance(charset, bytes) else None
    if codec not in (None, "ascii"):
        return data.decode(codec, "replace").rstrip("\ufffd")
    text = data.decode("utf-8", "replace").rstrip("\ufffd")
    # Unlabelled (or "ascii") 8-bit text that is not UTF-8 is most often cp1252.
    return data.decode("cp1252", "replace") if "\ufffd" in text else text
