"""One message of the fake Graph mailbox and how Graph shows it: JSON with $select, MIME, attachments.

A message is built either from plain fields (subject, sender, body...) or from
MIME bytes; either way ``mime()`` is what ``/$value`` answers and the source of
``internetMessageHeaders``, so the two views never disagree.
"""

import base64
import contextlib
import datetime
import email
import email.policy
import email.utils
import functools
import hashlib
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage

# What Graph returns for a message without $select; internetMessageHeaders and
# uniqueBody only come when selected (Graph's documented behaviour).
DEFAULT_PROPERTIES = (
    "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime", "sentDateTime",
    "hasAttachments", "internetMessageId", "subject", "bodyPreview", "importance", "parentFolderId",
    "conversationId", "conversationIndex", "isDeliveryReceiptRequested", "isReadReceiptRequested", "isRead",
    "isDraft", "webLink", "inferenceClassification", "body", "sender", "from", "toRecipients", "ccRecipients",
    "bccRecipients", "replyTo", "flag",
)
SELECT_ONLY = ("internetMessageHeaders", "uniqueBody")
PROPERTY_NAMES = {name.lower(): name for name in (*DEFAULT_PROPERTIES, *SELECT_ONLY, "id")}
# PidTagMessageSize, the one extended property the fake serves (Graph normalises the id to lower-case hex).
SIZE_PROPERTY_ID = "Integer 0xe08"
FLAG_STATUSES = ("notFlagged", "flagged", "complete")


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_datetime(value):
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.replace(microsecond=0)


def flag_status(flagged):
    if flagged in FLAG_STATUSES:
        return flagged
    return "flagged" if flagged else "notFlagged"


@functools.lru_cache(maxsize=4096)
def _parsed_address(text):
    return email.utils.parseaddr(text)


def address(text):
    name, addr = _parsed_address(text)
    return {"emailAddress": {"name": name or addr, "address": addr}}


def _decoded(value):
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # a broken encoded-word: Graph shows the raw text too
        return str(value)


@dataclass
class Attachment:
    id: str
    name: str
    content_type: str
    data: bytes
    is_inline: bool = False
    content_id: str | None = None

    def json(self, modified):
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "@odata.mediaContentType": self.content_type,
            "id": self.id,
            "lastModifiedDateTime": modified,
            "name": self.name,
            "contentType": self.content_type,
            "size": len(self.data),
            "isInline": self.is_inline,
            "contentId": self.content_id,
            "contentLocation": None,
            "contentBytes": base64.b64encode(self.data).decode("ascii"),
        }


@dataclass
class StoredMessage:
    id: str
    folder_id: str
    received: datetime.datetime
    subject: str = ""
    sender: str = "a@example.com"
    to: tuple = ()
    cc: tuple = ()
    body: str = ""
    body_type: str = "text"
    is_read: bool = False
    flag: str = "notFlagged"
    is_draft: bool = False
    internet_message_id: str = ""
    in_reply_to: str | None = None
    references: str | None = None
    conversation_id: str = ""
    attachments: list = field(default_factory=list)
    raw: bytes | None = None
    change: int = 0
    arrived: int = 0          # the change number that put it in its current folder
    modified: datetime.datetime | None = None
    _mime: bytes | None = None
    _headers: list | None = None

    # -- shapes ------------------------------------------------------------
    @property
    def change_key(self):
        digest = hashlib.sha1(f"{self.id}:{self.change}".encode()).digest()
        return "CQAAABYAAAA" + base64.b64encode(digest).decode("ascii")[:16]

    def etag(self):
        return f'W/"{self.change_key}"'

    def preview(self):
        text = re.sub(r"<[^>]*>", " ", self.body) if self.body_type == "html" else self.body
        return re.sub(r"\s+", " ", text).strip()[:255]

    def _property(self, name):
        received = iso(self.received)
        if name in ("createdDateTime", "receivedDateTime"):
            return received
        if name == "sentDateTime":
            return iso(self.received - datetime.timedelta(seconds=2))
        if name == "lastModifiedDateTime":
            return iso(self.modified or self.received)
        if name == "changeKey":
            return self.change_key
        if name == "hasAttachments":
            return any(not item.is_inline for item in self.attachments)
        if name == "internetMessageId":
            return self.internet_message_id
        if name == "subject":
            return self.subject
        if name == "bodyPreview":
            return self.preview()
        if name == "parentFolderId":
            return self.folder_id
        if name == "conversationId":
            return self.conversation_id
        if name == "conversationIndex":
            return base64.b64encode(hashlib.md5(self.conversation_id.encode()).digest()[:22]).decode()
        if name == "isRead":
            return self.is_read
        if name == "isDraft":
            return self.is_draft
        if name in ("sender", "from"):
            return address(self.sender)
        if name == "toRecipients":
            return [address(item) for item in self.to]
        if name == "ccRecipients":
            return [address(item) for item in self.cc]
        if name in ("bccRecipients", "replyTo", "categories"):
            return []
        if name == "flag":
            return {"flagStatus": self.flag}
        if name in ("body", "uniqueBody"):
            return {"contentType": self.body_type, "content": self.body}
        if name == "internetMessageHeaders":
            # Parsed once: the headers never change, and parsing them per listing made the fake,
            # not the adapter, the bottleneck of a 10k-message bootstrap.
            if self._headers is None:
                parsed = email.message_from_bytes(self.mime().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
                self._headers = [{"name": key, "value": _decoded(value)} for key, value in parsed.items()]
            return [dict(header) for header in self._headers]
        if name == "importance":
            return "normal"
        if name in ("isDeliveryReceiptRequested", "isReadReceiptRequested"):
            return False
        if name == "inferenceClassification":
            return "focused"
        if name == "webLink":
            return "https://outlook.office365.com/owa/?ItemID=" + self.id
        raise KeyError(name)

    def json(self, select=None, *, with_size=False, odata_type=False):
        shaped = {"@odata.type": "#microsoft.graph.message"} if odata_type else {}
        shaped["@odata.etag"] = self.etag()
        shaped["id"] = self.id
        for name in select or DEFAULT_PROPERTIES:
            if name != "id":
                shaped[name] = self._property(name)
        if with_size:
            shaped["singleValueExtendedProperties"] = [{"id": SIZE_PROPERTY_ID, "value": str(len(self.mime()))}]
        return shaped

    # -- MIME ----------------------------------------------------------------
    def mime(self):
        if self.raw is not None:
            return self.raw
        if self._mime is None:
            self._mime = self._build_mime()
        return self._mime

    def _build_mime(self):
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = self.sender
        if self.to:
            message["To"] = ", ".join(self.to)
        if self.cc:
            message["Cc"] = ", ".join(self.cc)
        message["Subject"] = self.subject
        message["Date"] = email.utils.format_datetime(self.received - datetime.timedelta(seconds=2))
        message["Message-ID"] = self.internet_message_id
        if self.in_reply_to:
            message["In-Reply-To"] = self.in_reply_to
        if self.references:
            message["References"] = self.references
        message.set_content(self.body, subtype="html" if self.body_type == "html" else "plain")
        for item in self.attachments:
            maintype, _, subtype = item.content_type.partition("/")
            message.add_attachment(item.data, maintype=maintype, subtype=subtype or "octet-stream",
                                   filename=item.name)
        return message.as_bytes()


def fields_from_mime(raw):
    """The Graph fields a delivered MIME message yields (Graph parses it the same way on delivery)."""
    parsed = email.message_from_bytes(raw)
    fields = {
        "subject": _decoded(parsed.get("Subject")),
        "sender": _decoded(parsed.get("From")) or "unknown@example.com",
        "to": tuple(f"{name} <{addr}>" if name else addr
                    for name, addr in email.utils.getaddresses([_decoded(v) for v in parsed.get_all("To", [])])),
        "cc": tuple(f"{name} <{addr}>" if name else addr
                    for name, addr in email.utils.getaddresses([_decoded(v) for v in parsed.get_all("Cc", [])])),
        "internet_message_id": str(parsed.get("Message-ID", "")).strip(),
        "in_reply_to": str(parsed["In-Reply-To"]).strip() if parsed.get("In-Reply-To") else None,
        "references": " ".join(str(parsed["References"]).split()) if parsed.get("References") else None,
        "date": None,
    }
    if parsed.get("Date"):
        with contextlib.suppress(TypeError, ValueError):
            fields["date"] = as_datetime(email.utils.parsedate_to_datetime(str(parsed["Date"])))
    body, html, attachments = None, None, []
    for part in parsed.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename or part.get_content_disposition() == "attachment":
            attachments.append((_decoded(filename or "attachment"), part.get_content_type(), payload,
                                part.get_content_disposition() == "inline", part.get("Content-ID")))
            continue
        text = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
        if part.get_content_type() == "text/plain" and body is None:
            body = text
        elif part.get_content_type() == "text/html" and html is None:
            html = text
    if body is not None:
        fields["body"], fields["body_type"] = body, "text"
    elif html is not None:
        fields["body"], fields["body_type"] = html, "html"
    else:
        fields["body"], fields["body_type"] = "", "text"
    fields["attachments"] = attachments
    return fields
