"""The engine's Mailbox port for Gmail, with the account-wide change feed.

Gmail's changes come per account (``history.list``), not per folder, so
this adapter is a feed provider: ``start_cursor`` and ``account_changes``
(``history.py``) carry incremental sync; the per-folder members serve the
walk down (``older``: a label's list, newest first, a page token as the
cursor) and the reconciliation of one folder by id after the history
expired (``reconcile.py``). ``open`` costs nothing: label ids never change
meaning, so there is nothing to compare.
"""

from __future__ import annotations

import base64
import binascii
import logging

from ...application.domain import BackfillState, Delta, FolderOpened, FolderState, Placement, RemoteFolder
from . import mapper
from .client import GmailClient, GmailConfig, InvalidArgument, NotFound
from .history import account_changes
from .position import WalkPosition, decode
from .quota import pacer_for
from .reconcile import reconcile_folder

_logger = logging.getLogger(__name__)

LIST_PAGE = 500  # messages.list's maximum
#: {digest of an access token: the address of its account}. A no-change pass is then one
#: history.list, not a getProfile first; a new token (hourly, or an account connected to
#: another Google account) asks the profile again, so the identity check still holds.
_ADDRESSES: dict[str, str] = {}


class GmailMailbox:
    provider = "gmail"
    moves_keep_ids = False  # a row is (label, message): a label change is a row added or removed
    flags_per_message = True  # UNREAD and STARRED are the message's: a FlagUpdate is for all its rows

    def __init__(self, config: GmailConfig, client: GmailClient | None = None):
        self.config = config
        self.client = client or GmailClient(config)
        self._opening_history_id = None
        fingerprint = self.client.token_fingerprint()
        address = _ADDRESSES.get(fingerprint)
        if address is None:
            profile = self.client.call(lambda: self.client.users.getProfile(userId="me"), "reading the profile")
            address = str(profile.get("emailAddress") or config.email).lower()
            # Taken before anything is listed: good as the start cursor until this mailbox lists something.
            self._opening_history_id = profile.get("historyId")
            if len(_ADDRESSES) > 1000:
                _ADDRESSES.clear()
            _ADDRESSES[fingerprint] = address
        self.identity = "gmail:" + address
        # The quota is the Google user's: pace by the address the profile gives, not the configured one.
        self.client.pacer = pacer_for(config.endpoint, address, config.quota_per_minute)
        self.folder_ids: set[str] | None = None  # label ids of the last list_folders()

    @property
    def deadline(self) -> float | None:
        """Set by the engine (AccountRun.limit_waits): no wait of the client may end past it."""
        return self.client.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self.client.deadline = value

    def close(self) -> None:
        self.client.close()

    # -- the account feed ---------------------------------------------------------

    def start_cursor(self) -> str:
        """The history id of now; every change after it reaches the feed, so take it before listing."""
        history_id = self._opening_history_id
        if history_id is None:
            profile = self.client.call(lambda: self.client.users.getProfile(userId="me"), "reading the profile")
            history_id = profile["historyId"]
        self._opening_history_id = None
        return str(history_id)

    def account_changes(self, cursor: str, settings):
        self._opening_history_id = None
        return account_changes(self, cursor, settings)

    # -- folders ------------------------------------------------------------------

    def list_folders(self) -> list[RemoteFolder]:
        self._opening_history_id = None
        answer = self.client.call(lambda: self.client.labels.list(userId="me"), "listing the labels")
        folders = mapper.folders(answer.get("labels") or [])
        self.folder_ids = {folder.remote_id for folder in folders}
        return folders

    def confirm_gone(self, folder: FolderState) -> bool:
        if folder.remote_id == mapper.ALL:
            return False
        try:
            self.client.call(lambda: self.client.labels.get(userId="me", id=folder.remote_id),
                             f"looking for the label {folder.path!r}")
        except NotFound:
            return True
        except Exception as error:  # unsure: the listing's word is not enough to drop a folder
            _logger.info("Could not check whether label %s is gone: %s", folder.path, error)
        return False

    def same_folder(self, old: FolderState, new: RemoteFolder, sample) -> bool:
        return False  # label ids survive renames: discovery matches by id, no evidence needed

    def open(self, folder: FolderState) -> FolderOpened:
        return FolderOpened(unchanged=True)

    # -- messages -------------------------------------------------------------------

    def older(self, folder: FolderState, limit: int, then: int | None = None) -> Delta:
        """The next ``limit`` messages of the label's list, newest first, from the page token.

        The token is the position after the last message taken (Gmail's
        tokens do not depend on the page size), so pages of any size chain;
        the cursor also names that message (``position.py``). Mail that
        arrives meanwhile is above the walk: the feed brings it. Each
        message is also placed in its other folders, All Mail above all, so
        the account's views show what a label shows before their own walks
        reach it. A stored token Gmail no longer honours starts the walk
        over from the top: what is indexed already is stored unchanged.
        """
        self._opening_history_id = None
        start = decode(folder.backfill_cursor)
        try:
            ids, token = self._walk_ids(folder.remote_id, limit, start.token)
        except InvalidArgument as error:
            if start.token is None:
                raise
            _logger.warning("Label %s: Gmail refused the walk's page token (%s); walking again from the top.",
                            folder.path, error)
            ids, token = self._walk_ids(folder.remote_id, limit, None)
        found = self.metadata(ids, f"reading messages of {folder.path!r}")
        taken = [found[message_id] for message_id in ids if found.get(message_id)]
        here = [(meta, folders) for meta, folders in taken if folder.remote_id in folders]
        dates = [meta.internal_date for meta, _folders in taken if meta.internal_date is not None]
        position = WalkPosition(token, ids[-1] if ids else None, min(dates) if dates else None)
        state = BackfillState.PENDING if token else BackfillState.DONE
        return Delta(
            upserts=tuple(meta for meta, _folders in here),
            placements=tuple(Placement(message=meta, folders=folders) for meta, folders in taken),
            cursor={"backfill_cursor": position.encode(), "backfill_state": state})

    def _walk_ids(self, label_id, limit, token):
        ids = []
        while len(ids) < limit:
            page = self.list_page(label_id, min(LIST_PAGE, limit - len(ids)), token)
            ids += [item["id"] for item in page.get("messages") or ()]
            token = page.get("nextPageToken")
            if not token:
                break
        return ids, token

    def changes(self, folder: FolderState, known, reconcile, settings):
        """Only a reconciliation by id: the feed carries every other change."""
        self._opening_history_id = None
        if not reconcile:
            return iter(())
        return reconcile_folder(self, folder, known, settings)

    def fetch(self, folder: FolderState, remote_ids) -> list:
        found = self.metadata(remote_ids, f"reading messages of {folder.path!r}")
        return [meta for meta, _folders in filter(None, found.values())]

    def fetch_raw(self, folder: FolderState, remote_id: str) -> bytes | None:
        try:
            answer = self.client.call(
                lambda: self.client.messages.get(userId="me", id=remote_id, format="raw"),
                "reading a message")
        except NotFound:
            return None
        raw = answer.get("raw") or ""
        try:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            return None

    # -- shared with history.py and reconcile.py --------------------------------------

    def list_page(self, label_id: str | None, size: int, token: str | None, extra=()) -> dict:
        """One page of messages.list: a label's (with ``extra`` labels AND-ed), or All Mail's."""
        labels = [*([label_id] if label_id and label_id != mapper.ALL else []), *extra]
        params = {"userId": "me", "maxResults": size}
        if labels:
            params["labelIds"] = labels
        # As Gmail shows them: a label, Starred, All Mail leave Spam and Trash out; those two list themselves.
        params["includeSpamTrash"] = mapper.lists_spam_trash(label_id)
        if token:
            params["pageToken"] = token
        return self.client.call(lambda: self.client.messages.list(**params), "listing messages")

    def metadata(self, ids, what: str) -> dict:
        """{id: (MessageMeta, its folders) or None when the message is gone}, by batched messages.get."""
        answers = self.client.get_many(ids, what, format="metadata",
                                       metadataHeaders=list(mapper.METADATA_HEADERS))
        return {message_id: (None if answer is None else
                             (mapper.message_meta(answer), mapper.placement_folders(answer.get("labelIds"))))
                for message_id, answer in answers.items()}


def open_mailbox(config: GmailConfig) -> GmailMailbox:
    return GmailMailbox(config)
