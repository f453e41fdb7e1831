"""What the Gmail and Graph transports share: the bytes they upload, and telling "not sent" from "maybe sent".

Both APIs take the final MIME as it is and read the recipients from its
headers, not from an envelope. The outbox's MIME has no Bcc header (it is
what recipients see), so the uploaded copy gets one: Gmail and Exchange
deliver to Bcc addresses and strip the header from what recipients get,
and keep it in the Sender's Sent copy, as a mail client shows it.

"Sent twice" comes from resending a request the server may have carried
out. Only an error raised before the request left this machine (no
connection, TLS handshake refused) proves nothing went out; anything later
(a timeout, a reset while waiting for the answer) means "maybe".
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence

import requests
import urllib3.exceptions

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def header_block(mime: bytes) -> bytes:
    match = _HEADER_END.search(mime)
    return mime[:match.start()] if match else mime


def message_id_of(mime: bytes) -> str:
    """The Message-ID header of the outbox's MIME (fixed when the row was created)."""
    found = re.search(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", header_block(mime))
    return found.group(1).decode("ascii", "replace").strip() if found else ""


def visible_recipients(mime: bytes) -> set[str]:
    head = header_block(mime).decode("utf-8", "replace")
    values = re.findall(r"(?im)^(?:to|cc|bcc):(.*(?:\r?\n[ \t].*)*)", head)
    return {address.lower() for _name, address in email.utils.getaddresses(values) if address}


def with_bcc(mime: bytes, recipients: Sequence[str]) -> bytes:
    """The MIME with a Bcc header naming the envelope recipients that To and Cc do not."""
    visible = visible_recipients(mime)
    hidden = [address for address in dict.fromkeys(recipients) if address and address.lower() not in visible]
    if not hidden:
        return mime
    newline = b"\r\n" if b"\r\n" in mime[:2000] else b"\n"
    header = b"Bcc: " + (b"," + newline + b" ").join(address.encode("utf-8") for address in hidden) + newline
    # First in the header block: no need to find its end, and folding rules do not care where it is.
    return header + mime


def never_left(error: BaseException) -> bool:
    """True when a requests error proves the request never reached the server (safe to send again)."""
    if isinstance(error, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(error, requests.exceptions.ConnectionError):
        reason = error.args[0] if error.args else None
        reason = getattr(reason, "reason", reason)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def wait_note(seconds: float | None) -> str:
    return f" (the server asks to wait {seconds:.0f} s)" if seconds else ""


def too_large(where: str, size: int, limit: int, extra: str = "") -> str:
    return (f"The message is too large for {where}: {size / 1_000_000:.1f} MB to upload, the limit is "
            f"{limit / 1_000_000:.1f} MB.{extra} Remove or shrink attachments, then Retry, or Discard.")
