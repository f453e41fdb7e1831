"""The exchanges imapclient cannot express, on its imaplib connection.

- ``IMAPClient.fetch`` keys its answer by sequence number and merges the
  responses that share one, so after an expunge an unsolicited flag update
  can land on the wrong message. Here each FETCH response is parsed on its
  own and keyed by the UID it carries; responses without one are dropped.
- QRESYNC's untagged ``VANISHED`` responses (RFC 7162 §3.2.10) are left
  unparsed by imapclient; imaplib files them under their name.

Sending and parsing are separate steps so that a caller can tell a server
error (raised by ``uid_fetch``) from an answer imapclient cannot parse
(raised by ``parse_fetch``).
"""

import re
from collections.abc import Sequence

from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

from ...application.errors import ServerError


def uid_fetch(client: IMAPClient, uid_set: str, items: Sequence[str], modifiers: Sequence[str] = ()) -> list:
    """Send ``UID FETCH uid_set (items) [(modifiers)]``; the raw FETCH data imaplib collected."""
    imap = client._imap
    args = ["FETCH", uid_set, f"({' '.join(items)})"]
    if modifiers:
        args.append(f"({' '.join(modifiers)})")
    tag = imap._command("UID", *args)
    typ, data = imap._command_complete("FETCH", tag)
    if typ != "OK":
        raise ServerError(f"{client.host}:{client.port} refused UID FETCH {uid_set}: {_text(data)}.")
    return imap._untagged_response(typ, data, "FETCH")[1]


def parse_fetch(raw: list) -> dict[int, dict]:
    """imapclient's FETCH parser, one response at a time, keyed by UID. Raises what the parser raises."""
    by_uid = {}
    for response in _responses(raw):
        for item in parse_fetch_response(response, normalise_times=False, uid_is_key=False).values():
            uid = item.get(b"UID")
            if uid is not None:
                by_uid.setdefault(uid, {}).update(item)
    return by_uid


# A FETCH response starts "<seq> (" on a line of its own or in the head of a
# literal; what follows a literal starts with a space or ")".
_RESPONSE_START = re.compile(rb"\d+ \(")


def _responses(raw: list):
    """imaplib's FETCH data split into one list per response."""
    response = []
    for element in raw:
        head = element[0] if isinstance(element, tuple) else element
        if response and isinstance(head, bytes) and _RESPONSE_START.match(head):
            yield response
            response = []
        response.append(element)
    if response:
        yield response


def uid_search(client: IMAPClient, low: int, high, esearch: bool) -> list[int]:
    """``UID SEARCH UID low:high``, ascending. With ESEARCH (RFC 4731) the answer is a
    compact set (``1:5000,5002``), so even a dense window costs a few bytes."""
    imap = client._imap
    criteria = ("UID", f"{low}:{high}")
    if not esearch:
        return sorted(client.search(list(criteria)))
    typ, data = imap._simple_command("UID", "SEARCH", "RETURN", "(ALL)", *criteria)
    if typ != "OK":
        raise ServerError(f"{client.host}:{client.port} refused UID SEARCH {low}:{high}: {_text(data)}.")
    uids = set()
    for line in imap._untagged_response(typ, data, "ESEARCH")[1]:
        match = _ESEARCH_ALL.search(_text(line))
        if match:
            uids.update(_expand(match.group(1), low, high if isinstance(high, int) else _MAX_UID))
    return sorted(uids)


def uid_esearch(client: IMAPClient, low: int, high: int, item: str, criteria=()) -> int | None:
    """One ESEARCH result item (RFC 4731: ``MIN``, ``MAX`` or ``COUNT``) over ``UID low:high``
    and ``criteria``; None when nothing matched (the server then leaves MIN and MAX out)."""
    imap = client._imap
    typ, data = imap._simple_command("UID", "SEARCH", "RETURN", f"({item})", *criteria, "UID", f"{low}:{high}")
    if typ != "OK":
        raise ServerError(f"{client.host}:{client.port} refused UID SEARCH {low}:{high}: {_text(data)}.")
    pattern = re.compile(rf"\b{item}\s+(\d+)", re.IGNORECASE)
    for line in imap._untagged_response(typ, data, "ESEARCH")[1]:
        match = pattern.search(_text(line))
        if match:
            return int(match.group(1))
    return None


_MAX_UID = 2**32 - 1
_ESEARCH_ALL = re.compile(r"\bALL\s+([0-9:,]+)", re.IGNORECASE)


def pop_vanished(client: IMAPClient, low: int, high: int) -> frozenset[int]:
    """UIDs in ``low..high`` reported by VANISHED since the folder was selected; forgets them."""
    uids = set()
    for line in client._imap.untagged_responses.pop("VANISHED", []):
        uid_set = _EARLIER.sub("", _text(line)).strip()
        try:
            uids.update(_expand(uid_set, low, high))
        except ValueError as error:
            raise ServerError(f"{client.host}:{client.port} sent a VANISHED response that is not a UID set: "
                              f"{uid_set[:100]!r}.") from error
    return frozenset(uids)


_EARLIER = re.compile(r"^\s*\(EARLIER\)", re.IGNORECASE)


def _expand(uid_set: str, low: int, high: int):
    """The UIDs of a sequence set like ``1:3,7,12:10``, clipped to ``low..high``."""
    for piece in uid_set.split(","):
        first, _, last = piece.partition(":")
        start, end = sorted((int(first), int(last or first)))
        yield from range(max(start, low), min(end, high) + 1)


def _text(value) -> str:
    if isinstance(value, list):
        value = b" ".join(v for v in value if isinstance(v, bytes))
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
