"""Gmail's JSON as the engine's values: labels as folders, messages as MessageMeta.

Gmail has no folders, only labels on one message. The index keeps one row
per (label folder, message id), so a label's list is a plain folder list;
plus one virtual folder, ``ALL`` ("All Mail": every message outside Spam
and Trash), through which search and "All inboxes" see a message once
however many labels it has. UNREAD and STARRED are labels too, but per
message: they become the flags of every row of the message.

Nothing here raises on odd input: a header that cannot be read costs its
field (named in ``parse_error``), never the message's row.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import html

from ...application.domain import Flags, FolderRole, MessageMeta, RemoteFolder
from ..imap.headers import decode_header, squeeze
from ..imap.metadata import utc_naive

ALL = "ALL"  # the virtual folder's remote id: messages.list without labelIds
ALL_PATH = "All Mail"
DELIMITER = "/"

#: system labels that are folders, and their roles. STARRED and IMPORTANT are views: a
#: message is in them as long as it carries the label, like any folder.
SYSTEM_FOLDERS = {
    "INBOX": FolderRole.INBOX,
    "SENT": FolderRole.SENT,
    "DRAFT": FolderRole.DRAFTS,
    "TRASH": FolderRole.TRASH,
    "SPAM": FolderRole.JUNK,
    "STARRED": FolderRole.FLAGGED,
    "IMPORTANT": FolderRole.OTHER,
}
#: a change of only these labels is a flag change, applied to every row of the message. Not
#: STARRED: it is a flag, but also the Starred folder, which gains or loses a row.
FLAG_LABELS = frozenset({"UNREAD"})
NOT_FOLDERS = frozenset({"UNREAD", "CHAT"})  # and CATEGORY_*: Gmail's tabs, a view of INBOX
OUT_OF_ALL = frozenset({"SPAM", "TRASH"})  # All Mail is everything but these

#: asked for with format=metadata: what the index keeps
METADATA_HEADERS = ("Message-ID", "In-Reply-To", "References", "Subject", "From", "To", "Cc", "Date")


def is_folder_label(label: dict) -> bool:
    return label.get("type") == "user" or label.get("id") in SYSTEM_FOLDERS


def label_folder(label: dict) -> RemoteFolder:
    label_id, path = label["id"], label.get("name") or label["id"]
    return RemoteFolder(path=path, name=path.rsplit(DELIMITER, 1)[-1], delimiter=DELIMITER,
                        role=SYSTEM_FOLDERS.get(label_id, FolderRole.OTHER), selectable=True, remote_id=label_id)


def folders(labels: list[dict]) -> list[RemoteFolder]:
    """The folders of a labels.list answer, with All Mail."""
    listed = [label_folder(label) for label in labels if is_folder_label(label)]
    listed.append(RemoteFolder(path=ALL_PATH, name=ALL_PATH, delimiter=DELIMITER, role=FolderRole.ALL,
                               selectable=True, remote_id=ALL))
    return listed


def is_folder_id(label_id: str) -> bool:
    """By id alone, for labels met in messages: every label is a folder but the flags and categories."""
    return label_id in SYSTEM_FOLDERS or not (label_id in NOT_FOLDERS or label_id.startswith("CATEGORY_"))


def placement_folders(label_ids) -> frozenset[str]:
    """The folders (remote ids) a message with these labels is in: one per folder label, plus
    All Mail. A message in Trash or Spam is in that folder only: Gmail's other views (its
    labels, Starred, All Mail) leave Trash and Spam out, though the message keeps the labels."""
    labels = set(label_ids or ())
    for hidden in ("TRASH", "SPAM"):
        if hidden in labels:
            return frozenset({hidden})
    found = {label for label in labels if is_folder_id(label)}
    found.add(ALL)
    return frozenset(found)


def lists_spam_trash(label_id: str | None) -> bool:
    """Whether a folder's listing includes Spam and Trash: only Trash's and Spam's own do."""
    return label_id in OUT_OF_ALL


def flags(label_ids) -> Flags:
    labels = set(label_ids or ())
    # Gmail has no "answered": a reply is another message of the thread.
    return Flags(seen="UNREAD" not in labels, flagged="STARRED" in labels, draft="DRAFT" in labels)


def message_meta(message: dict) -> MessageMeta:
    """A messages.get answer (format=metadata) as the index's row of it."""
    problems = []
    headers = {}
    for header in (message.get("payload") or {}).get("headers") or ():
        name = str(header.get("name", "")).lower()
        headers.setdefault(name, header.get("value"))
    fields = {}
    for field, name, read in _HEADER_FIELDS:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            fields[field] = read(raw)
        except Exception as error:  # one broken header costs its field, not the row
            problems.append(f"{name}: {type(error).__name__}: {error}"[:300])
    try:
        internal = dt.datetime.fromtimestamp(int(message["internalDate"]) / 1000, dt.timezone.utc)
        fields["internal_date"] = internal.replace(tzinfo=None)
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as error:
        problems.append(f"internalDate: {type(error).__name__}: {error}"[:300])
    try:
        fields["size"] = int(message.get("sizeEstimate") or 0)
    except (TypeError, ValueError):
        problems.append("sizeEstimate: not a number")
    snippet = message.get("snippet")
    return MessageMeta(
        remote_id=message["id"],
        flags=flags(message.get("labelIds")),
        snippet=(squeeze(html.unescape(str(snippet))) or None) if snippet else None,  # Gmail escapes it for HTML
        parse_error="; ".join(problems) or None,
        **fields,
    )


def _token(raw) -> str | None:
    return squeeze(str(raw)) or None


def _addresses(raw) -> str | None:
    """``Name <a@b>, c@d`` with names decoded (RFC 2047), as the IMAP mapper writes them."""
    formatted = []
    for name, address in email.utils.getaddresses([str(raw)]):
        name = decode_header(name)
        address = squeeze(address)
        if not (name or address):
            continue
        if name and any(char in name for char in '()<>[]:;@\\,."'):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        formatted.append(f"{name} <{address}>" if name and address else (address or name))
    return ", ".join(formatted) or None


def _date(raw) -> dt.datetime | None:
    try:
        return utc_naive(email.utils.parsedate_to_datetime(str(raw)))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # a Date the sender broke: internal_date still orders the message


_HEADER_FIELDS = (  # (MessageMeta field, lower-case header name, reader)
    ("subject", "subject", decode_header),
    ("message_id", "message-id", _token),
    ("in_reply_to", "in-reply-to", _token),
    ("references", "references", _token),
    ("from_address", "from", _addresses),
    ("to_addresses", "to", _addresses),
    ("cc_addresses", "cc", _addresses),
    ("date", "date", _date),
)
