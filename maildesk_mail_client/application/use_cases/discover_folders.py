"""Flow 1, first step: make the folder table match the server's LIST.

IMAP folders have no stable id, only a path. A folder renamed on the server
keeps its UIDVALIDITY and UIDs (Dovecot, Cyrus and Gmail all do), so a path
that disappeared and a new path with the same UIDVALIDITY are one folder
moved: we rename it and keep its index instead of re-downloading it.
"""

import dataclasses
import logging

from ..errors import FolderNotFound

_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FolderChanges:
    created: list = dataclasses.field(default_factory=list)
    renamed: list = dataclasses.field(default_factory=list)  # (old path, new path)
    deleted: list = dataclasses.field(default_factory=list)

    @property
    def changed(self):
        return bool(self.created or self.renamed or self.deleted)


def discover_folders(run):
    ctx, session = run.ctx, run.session
    remote = {folder.path: folder for folder in session.list_folders()}
    local = {folder.path: folder for folder in ctx.folders.list_for_account(run.account_id)}
    changes = FolderChanges()

    appeared = [folder for path, folder in remote.items() if path not in local]
    vanished = [folder for path, folder in local.items() if path not in remote]
    renames = _match_renames(session, appeared, vanished)

    for new_remote, old_state in renames:
        ctx.folders.update_remote(old_state.id, new_remote)
        changes.renamed.append((old_state.path, new_remote.path))
    renamed_ids = {old.id for _new, old in renames}
    renamed_paths = {new.path for new, _old in renames}

    for old_state in vanished:
        if old_state.id not in renamed_ids:
            ctx.folders.delete(old_state.id)
            changes.deleted.append(old_state.path)
            run.report.folders_reset.add(old_state.id)
    for new_remote in appeared:
        if new_remote.path not in renamed_paths:
            ctx.folders.insert(run.account_id, new_remote)
            changes.created.append(new_remote.path)
    for path, state in local.items():
        current = remote.get(path)
        if current and (current.role, current.selectable) != (state.role, state.selectable):
            ctx.folders.update_remote(state.id, current)

    ctx.accounts.mark_folders_synced(run.account_id)
    if changes.changed:
        _logger.info("Account %s folders: %s", run.account_id, changes)
        if changes.created:
            ctx.scheduler.wake_bootstrap()  # committed with the new folders
    run.checkpoint()
    return changes


def _match_renames(session, appeared, vanished):
    """Pairs (new remote folder, old local state) that are the same folder.

    UIDVALIDITY is only unique per name (RFC 3501 §2.3.1.1), so a match must
    be one-to-one: one vanished and one appeared folder sharing the value.
    Anything ambiguous is re-indexed instead, which costs time, not data.
    """
    olds = {}
    for state in vanished:
        if state.uidvalidity:
            olds.setdefault(state.uidvalidity, []).append(state)
    if not olds:
        return []
    news = {}
    for remote in appeared:
        if not remote.selectable:
            continue
        try:
            uidvalidity = session.select(remote.path).uidvalidity
        except FolderNotFound:
            continue  # gone again already; the next discovery will see
        news.setdefault(uidvalidity, []).append(remote)
    return [(news[value][0], olds[value][0]) for value in news
            if len(news[value]) == 1 and len(olds.get(value, ())) == 1]
