"""FETCH answers as MessageMeta.

``message_meta`` never raises: each group of fields is read on its own, so
a broken ENVELOPE still leaves the flags, size and body structure, and
within the ENVELOPE each field is read on its own, so a broken subject
still leaves the sender, recipients, Message-ID and date. Whatever could
not be read is named in ``parse_error``. The work per
message is a handful of dictionary look-ups and, only for headers that
need it, RFC 2047 decoding: indexing must keep pace with the FETCH itself.
"""

import datetime as dt
import logging
import re

from ...application.domain import Flags, MessageMeta
from .bodystructure import has_attachments, snippet
from .headers import bytes_to_text, decode_header, squeeze

_logger = logging.getLogger(__name__)

SNIPPET_BYTES = 2048
REFERENCES_ITEM = "BODY.PEEK[HEADER.FIELDS (REFERENCES)]"
PART1_ITEM = f"BODY.PEEK[1]<0.{SNIPPET_BYTES}>"
# What is still worth asking for a message whose full answer cannot be parsed.
MINIMAL_ITEMS = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE")
METADATA_ITEMS = (*MINIMAL_ITEMS, "ENVELOPE", "BODYSTRUCTURE", REFERENCES_ITEM, PART1_ITEM)

_REFERENCES_KEY = b"BODY[HEADER.FIELDS (REFERENCES)]"
_PART1_KEY = b"BODY[1]<0>"
_HEADER_NAME = re.compile(r"^references\s*:", re.I | re.M)
_QUOTE_NAME = re.compile(r'[()<>\[\]:;@\\,."]')


def fetch_items(condstore: bool, items=METADATA_ITEMS) -> list[str]:
    return [*items, "MODSEQ"] if condstore else list(items)


class _Missing(LookupError):
    pass


class _PartlyRead(Exception):
    """What could be read of an item (``value``), and what could not (``problems``)."""

    def __init__(self, value, problems):
        super().__init__("; ".join(problems))
        self.value, self.problems = value, problems


def message_meta(uid: int, data: dict, known_error: str | None = None) -> MessageMeta:
    """``data`` is one message of a parsed FETCH answer of METADATA_ITEMS.

    With ``known_error`` (why the full answer could not be had), ``data``
    holds MINIMAL_ITEMS only.
    """
    fields = {}
    problems = [known_error] if known_error else []
    for name, read in _MINIMAL_READERS if known_error else _READERS:
        try:
            fields.update(read(data))
        except _Missing as error:
            problems.append(f"{name}: {error}")
        except _PartlyRead as partial:
            fields.update(partial.value)
            problems.extend(f"{name} {problem}" for problem in partial.problems)
        except Exception as error:  # one bad item must cost neither the others nor the chunk
            problems.append(_describe(name, error))
    return MessageMeta(uid=uid, parse_error="; ".join(problems) or None, **fields)


def flag_modseq(data: dict) -> int | None:
    value = data.get(b"MODSEQ")
    return int(value[0]) if value else None


def utc_naive(value: dt.datetime | None) -> dt.datetime | None:
    """Naive UTC, as Odoo stores datetimes. A date that cannot be expressed is None."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None


def _describe(name, error) -> str:
    return f"{name}: {type(error).__name__}: {error}"[:300]


def _item(data, key):
    try:
        return data[key]
    except KeyError:
        raise _Missing("missing from the server's answer") from None


def _flags(data):
    return {"flags": Flags.from_imap(_item(data, b"FLAGS")), "modseq": flag_modseq(data)}


def _size_and_date(data):
    return {"internal_date": utc_naive(_item(data, b"INTERNALDATE")), "size": int(_item(data, b"RFC822.SIZE"))}


def _envelope(data):
    """Each field on its own: a header the sender broke costs that field, not its neighbours."""
    envelope = _item(data, b"ENVELOPE")
    fields, problems = {}, []
    for field, attribute, read in _ENVELOPE_FIELDS:
        try:
            fields[field] = read(getattr(envelope, attribute))
        except _PartlyRead as partial:  # an address list without the addresses that could not be read
            fields[field] = partial.value
            problems.extend(f"{field} {problem}" for problem in partial.problems)
        except Exception as error:
            problems.append(_describe(field, error))
    if problems:
        raise _PartlyRead(fields, problems)
    return fields


def _references(data):
    raw = _item(data, _REFERENCES_KEY)
    return {"references": squeeze(_HEADER_NAME.sub(" ", bytes_to_text(raw or b""))) or None}


def _structure(data):
    body = _item(data, b"BODYSTRUCTURE")
    fields = {"has_attachments": has_attachments(body)}
    try:
        fields["snippet"] = snippet(body, _part1(data))
    except Exception as error:  # a preview is a nicety: without one the message is still whole
        _logger.debug("No snippet for a message: %s: %s", type(error).__name__, error)
    return fields


_MINIMAL_READERS = (("FLAGS", _flags), ("INTERNALDATE/RFC822.SIZE", _size_and_date))
_READERS = (*_MINIMAL_READERS, ("ENVELOPE", _envelope), ("References", _references), ("BODYSTRUCTURE", _structure))


def format_addresses(addresses) -> str | None:
    """An RFC 5322 address list, ``Name <mailbox@host>, ...``, with names decoded.

    Each address on its own: one that cannot be formatted is left out and
    the others kept, then ``_PartlyRead`` says which (``_envelope`` records it).
    """
    if not addresses:
        return None
    formatted, problems = [], []
    for position, address in enumerate(addresses, 1):
        try:
            text = _format_address(address)
        except Exception as error:
            problems.append(_describe(f"address {position}", error))
            continue
        if text:
            formatted.append(text)
    value = ", ".join(formatted) or None
    if problems:
        raise _PartlyRead(value, problems)
    return value


def _format_address(address) -> str | None:
    if address.host is None:
        return None  # start or end of a group (RFC 3501 §7.4.2); its members follow as usual
    email = f"{_token(address.mailbox) or ''}@{_token(address.host) or ''}".strip("@")
    name = decode_header(address.name)
    if name and _QUOTE_NAME.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{email}>" if name else email


def _token(raw) -> str | None:
    """Message-IDs and address parts: no RFC 2047, but still possibly 8-bit."""
    if raw is None:
        return None
    return squeeze(bytes_to_text(raw) if isinstance(raw, bytes) else str(raw)) or None


_ENVELOPE_FIELDS = (  # (MessageMeta field, Envelope attribute, reader)
    ("subject", "subject", decode_header),
    ("message_id", "message_id", _token),
    ("in_reply_to", "in_reply_to", _token),
    ("from_address", "from_", format_addresses),
    ("to_addresses", "to", format_addresses),
    ("cc_addresses", "cc", format_addresses),
    ("date", "date", utc_naive),
)


def _part1(data):
    raw = data.get(_PART1_KEY)
    if raw is None:  # servers differ in how they echo the partial range
        raw = next((value for key, value in data.items() if key.startswith(b"BODY[1]")), None)
    return raw
