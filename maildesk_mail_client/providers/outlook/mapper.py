"""Graph JSON → the engine's values: folders, messages, flags.

Each field is read on its own: a value Graph gives in a shape we did not
expect costs that field (noted in ``parse_error``), never the message,
so the index always holds every id the server has.
"""

from __future__ import annotations

import datetime as dt

from ...application.domain import Flags, FlagUpdate, FolderRole, MessageMeta, RemoteFolder

#: Graph's well-known folder names and the roles they play.
WELL_KNOWN_ROLES = {
    "inbox": FolderRole.INBOX,
    "sentitems": FolderRole.SENT,
    "drafts": FolderRole.DRAFTS,
    "deleteditems": FolderRole.TRASH,
    "junkemail": FolderRole.JUNK,
    "archive": FolderRole.ARCHIVE,
}

FOLDER_FIELDS = "id,displayName,parentFolderId,childFolderCount,isHidden"
#: PidTagMessageSize: Graph v1.0 has no size property, the extended property is the message's size in bytes.
SIZE_PROPERTY = "Integer 0x0E08"
SIZE_EXPAND = f"singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')"
#: What the index keeps of a message. internetMessageHeaders gives In-Reply-To and References (threads);
#: Graph returns it only when selected.
MESSAGE_FIELDS = ("id,receivedDateTime,sentDateTime,subject,from,sender,toRecipients,ccRecipients,isRead,isDraft,"
                  "flag,hasAttachments,bodyPreview,internetMessageId,internetMessageHeaders,parentFolderId")
#: Fields without which a delta item is not a full description (Graph may send only what changed).
_FULL_MARKERS = ("receivedDateTime", "subject", "isRead")
_THREAD_HEADERS = {"in-reply-to": "in_reply_to", "references": "references"}
SNIPPET_CHARS = 200
PATH_DELIMITER = "/"


def folder_path(parent_path: str | None, name: str) -> str:
    """Display names joined by '/'; a '/' inside a name becomes U+2215 (division slash), so paths split right."""
    segment = (name or "").replace(PATH_DELIMITER, "\u2215")
    return f"{parent_path}{PATH_DELIMITER}{segment}" if parent_path else segment


def remote_folder(item: dict, parent_path: str | None, roles: dict) -> RemoteFolder:
    """``roles``: folder id → role, from the well-known names."""
    name = item.get("displayName") or item["id"]
    return RemoteFolder(path=folder_path(parent_path, name), name=name, delimiter=PATH_DELIMITER,
                        role=roles.get(item["id"], FolderRole.OTHER), selectable=True, remote_id=item["id"])


def is_full(item: dict) -> bool:
    return all(name in item for name in _FULL_MARKERS)


def flags_of(item: dict) -> Flags | None:
    """None when the item does not say (a delta entry that names only the id)."""
    if "isRead" not in item and "flag" not in item:
        return None
    flag = item.get("flag") or {}
    return Flags(seen=bool(item.get("isRead")), flagged=flag.get("flagStatus") == "flagged",
                 answered=False, draft=bool(item.get("isDraft")))


def flag_update(item: dict) -> FlagUpdate | None:
    flags = flags_of(item)
    return FlagUpdate(remote_id=item["id"], flags=flags) if flags is not None else None


def thin_message(item: dict, reason: str) -> MessageMeta:
    """A message Graph named without describing it: indexed with what is known, asked for again later."""
    return MessageMeta(remote_id=item["id"], flags=flags_of(item) or Flags(), parse_error=reason, refetch=True)


def message_meta(item: dict) -> MessageMeta:
    """A full message JSON (``$select=MESSAGE_FIELDS``) as the index keeps it."""
    problems = []
    fields = {}
    for name, read in _READERS:
        try:
            fields.update(read(item))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            problems.append(f"{name}: {type(error).__name__}: {error}"[:120])
    parse_error = ("Graph described this message in an unexpected shape: " + "; ".join(problems))[:500] \
        if problems else None
    return MessageMeta(remote_id=item["id"], flags=flags_of(item) or Flags(), parse_error=parse_error, **fields)


def utc(value: str | None) -> dt.datetime | None:
    """Graph's ISO 8601 (``2024-05-01T10:00:00Z``, sometimes with fractions or an offset) as naive UTC."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):  # a date Graph should never send: the message is indexed without it
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def address(recipient: dict | None) -> str | None:
    """``Name <mailbox@host>`` (or the bare address), as the IMAP mapper writes it."""
    if not recipient:
        return None
    email = recipient.get("emailAddress") or {}
    mail, name = (email.get("address") or "").strip(), (email.get("name") or "").strip()
    if name and mail and name.lower() != mail.lower():
        if any(char in name for char in ',;:<>@"'):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{mail}>"
    return mail or name or None


def addresses(recipients) -> str | None:
    return ", ".join(filter(None, (address(item) for item in recipients or ()))) or None


def _dates(item):
    return {"internal_date": utc(item.get("receivedDateTime")), "date": utc(item.get("sentDateTime"))}


def _people(item):
    return {"from_address": address(item.get("from") or item.get("sender")),
            "to_addresses": addresses(item.get("toRecipients")),
            "cc_addresses": addresses(item.get("ccRecipients"))}


def _text(item):
    preview = " ".join((item.get("bodyPreview") or "").split())
    return {"subject": item.get("subject"), "snippet": preview[:SNIPPET_CHARS].rstrip() or None,
            "has_attachments": bool(item.get("hasAttachments")),
            "message_id": (item.get("internetMessageId") or "").strip() or None}


def _headers(item):
    found = {}
    for header in item.get("internetMessageHeaders") or ():
        field = _THREAD_HEADERS.get((header.get("name") or "").lower())
        if field and field not in found:
            found[field] = " ".join((header.get("value") or "").split()) or None
    return found


def _size(item):
    for prop in item.get("singleValueExtendedProperties") or ():
        if (prop.get("id") or "").replace(" ", "").lower() in ("integer0x0e08", "integer0xe08"):
            return {"size": int(prop.get("value") or 0)}
    return {}


_READERS = (("dates", _dates), ("addresses", _people), ("text", _text), ("headers", _headers), ("size", _size))
