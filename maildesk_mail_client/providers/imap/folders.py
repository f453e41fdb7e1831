"""LIST answers as RemoteFolders, with their roles.

Roles come from SPECIAL-USE attributes (RFC 6154) when the server gives
them, and otherwise from the names mail clients conventionally use. One
folder per role at most: a flagged folder beats a well-named one; between
names, the shallower folder wins ("Sent" over "Work/Sent"), then the name
listed first below.
"""

import logging

from imapclient import IMAPClient, imap_utf7

from ...application.domain import FolderRole, RemoteFolder

_logger = logging.getLogger(__name__)

_SPECIAL_USE = {
    "\\sent": FolderRole.SENT,
    "\\drafts": FolderRole.DRAFTS,
    "\\trash": FolderRole.TRASH,
    "\\junk": FolderRole.JUNK,
    "\\archive": FolderRole.ARCHIVE,
    "\\all": FolderRole.ALL,
    "\\flagged": FolderRole.FLAGGED,
}

# Last path segment, lower case, most likely first within a role.
_CONVENTIONAL_NAMES = {
    FolderRole.SENT: ("sent", "sent items", "sent messages", "sent mail"),
    FolderRole.DRAFTS: ("drafts", "draft"),
    FolderRole.TRASH: ("trash", "deleted items", "deleted messages", "bin"),
    FolderRole.JUNK: ("junk", "spam", "junk e-mail", "junk email", "bulk mail"),
    FolderRole.ARCHIVE: ("archive", "archives"),
}
_ROLE_BY_NAME = {
    name: (role, rank) for role, names in _CONVENTIONAL_NAMES.items() for rank, name in enumerate(names)
}

_NOT_SELECTABLE = {"\\noselect", "\\nonexistent"}


def list_folders(client: IMAPClient) -> list[RemoteFolder]:
    # Raw names, so that a name that is not valid modified UTF-7 is caught here
    # rather than turned into a path that SELECT can never find.
    client.folder_encode = False
    try:
        entries = client.list_folders()
    finally:
        client.folder_encode = True
    return folders_from_list(entries)


def folders_from_list(entries) -> list[RemoteFolder]:
    """``entries`` are (flags, delimiter, raw name) triples from ``IMAPClient.list_folders``."""
    listed = [_listed(flags, delimiter, name) for flags, delimiter, name in entries]
    roles = _assign_roles(listed)
    return [
        RemoteFolder(path=path, name=_last_segment(path, delimiter), delimiter=delimiter,
                     role=roles.get(path, FolderRole.OTHER), selectable=not (flags & _NOT_SELECTABLE))
        for path, delimiter, flags in listed
    ]


def _listed(flags, delimiter, name):
    flags = {_text(flag).lower() for flag in flags}
    path = _decode_name(name)
    if path is None:
        _logger.warning("Folder %r has a name that is not valid modified UTF-7 (RFC 3501 §5.1.3); "
                        "it is listed but not synced.", name)
        path = _text(name)
        flags.add("\\noselect")
    return path, (_text(delimiter) if delimiter else None), flags


def _decode_name(raw):
    """The folder name as text, or None when it would not encode back to the same bytes."""
    if not isinstance(raw, bytes):
        return str(raw)  # imapclient turns a quoted number into an int
    try:
        name = imap_utf7.decode(raw)
    except UnicodeDecodeError:
        return None
    return name if imap_utf7.encode(name) == raw else None


def _assign_roles(listed) -> dict[str, str]:
    roles = {}

    def claim(path, role):
        if path not in roles and role not in roles.values():
            roles[path] = role

    for path, _delimiter, _flags in listed:
        if path.upper() == "INBOX":
            claim(path, FolderRole.INBOX)
    for path, _delimiter, flags in listed:
        for flag in sorted(flags & _SPECIAL_USE.keys()):
            claim(path, _SPECIAL_USE[flag])
    by_name = []
    for path, delimiter, flags in listed:
        role, rank = _ROLE_BY_NAME.get(_last_segment(path, delimiter).lower(), (None, 0))
        if role and not flags & _NOT_SELECTABLE:
            by_name.append((path.count(delimiter) if delimiter else 0, rank, path, role))
    for _depth, _rank, path, role in sorted(by_name):
        claim(path, role)
    return roles


def _last_segment(path, delimiter):
    return path.rsplit(delimiter, 1)[-1] if delimiter else path


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
