"""The final message of an outbox row, built once, and what the index keeps of it.

The MIME is built when the user presses Send and stored with the row, so
every attempt (and the proof that an earlier one got through) hands the
server the very same bytes with the very same Message-ID.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.policy
import email.utils
import uuid
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from .domain import Flags, MessageMeta

#: SMTP's policy: CRLF line ends and lines folded under 78 characters.
_POLICY = email.policy.SMTP


@dataclasses.dataclass(frozen=True)
class Attachment:
    filename: str
    mimetype: str
    content: bytes


@dataclasses.dataclass(frozen=True)
class Outgoing:
    from_name: str
    from_email: str
    message_id: str
    subject: str = ""
    to: str = ""  # "Name <a@b>, c@d"
    cc: str = ""
    bcc: str = ""  # envelope only, never a header
    html: str = ""
    text: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: Sequence[Attachment] = ()
    date: dt.datetime | None = None  # aware; now when None


def new_message_id(email_address: str | None) -> str:
    """``<random@domain>``: the account's domain when it has one, so receivers' filters see a sane id."""
    domain = (email_address or "").rpartition("@")[2].strip().lower() or "maildesk.local"
    return f"<{uuid.uuid4().hex}@{domain}>"


def addresses(header_value: str) -> list[tuple[str, str]]:
    """(name, address) pairs of "Name <a@b>, c@d"; entries without an @ are dropped."""
    return [(name, address) for name, address in email.utils.getaddresses([header_value or ""])
            if "@" in address]


def invalid_addresses(header_value: str) -> list[str]:
    """The entries of a recipient field that are not an address, as the user typed them."""
    bad = []
    for name, address in email.utils.getaddresses([header_value or ""]):
        local, _at, domain = address.partition("@")
        if not (local and domain and "." in domain.strip(".") and " " not in address):
            bad.append(address or name)
    return [entry for entry in bad if entry]


def recipients(outgoing: Outgoing) -> list[str]:
    """Every envelope recipient (To, Cc and Bcc), each once, in order."""
    seen, result = set(), []
    for field in (outgoing.to, outgoing.cc, outgoing.bcc):
        for _name, address in addresses(field):
            if address.lower() not in seen:
                seen.add(address.lower())
                result.append(address)
    return result


def build(outgoing: Outgoing) -> bytes:
    """RFC 5322 bytes: text and HTML alternatives, then the attachments. Bcc is not written."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = Address(display_name=outgoing.from_name or "", addr_spec=outgoing.from_email)
    if outgoing.to:
        message["To"] = _header_addresses(outgoing.to)
    if outgoing.cc:
        message["Cc"] = _header_addresses(outgoing.cc)
    message["Subject"] = outgoing.subject or ""
    message["Date"] = email.utils.format_datetime(outgoing.date or dt.datetime.now(dt.timezone.utc))
    message["Message-ID"] = outgoing.message_id
    if outgoing.in_reply_to:
        message["In-Reply-To"] = outgoing.in_reply_to
    if outgoing.references:
        message["References"] = outgoing.references
    message["MIME-Version"] = "1.0"
    message.set_content(outgoing.text or "", subtype="plain", charset="utf-8")
    if outgoing.html:
        message.add_alternative(outgoing.html, subtype="html", charset="utf-8")
    for attachment in outgoing.attachments:
        maintype, _slash, subtype = (attachment.mimetype or "application/octet-stream").partition("/")
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=attachment.filename or "attachment")
    return message.as_bytes(policy=_POLICY)


def _header_addresses(value: str) -> str:
    return ", ".join(email.utils.formataddr((name, address)) for name, address in addresses(value))


def sent_meta(mime: bytes, remote_id: str, uid: int | None = None,
              now: dt.datetime | None = None) -> MessageMeta:
    """The index row of the Sent copy, read from the bytes we sent: no round trip to show it."""
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(mime)

    def text(name):
        try:
            value = headers.get(name)
        except (TypeError, ValueError):  # a header the policy cannot parse: keep it out, not the row
            return None
        return str(value).strip() if value is not None else None

    date = None
    try:
        parsed = email.utils.parsedate_to_datetime(text("Date")) if text("Date") else None
        date = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None) if parsed else None
    except (TypeError, ValueError):
        date = None
    content_type = (text("Content-Type") or "").lower()
    return MessageMeta(
        uid=uid, remote_id=remote_id, flags=Flags(seen=True), size=len(mime),
        internal_date=now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        message_id=text("Message-ID"), in_reply_to=text("In-Reply-To"), references=text("References"),
        subject=text("Subject"), from_address=text("From"), to_addresses=text("To"), cc_addresses=text("Cc"),
        date=date, has_attachments=content_type.startswith("multipart/mixed"),
    )
