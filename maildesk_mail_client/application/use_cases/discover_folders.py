"""Flow 1, first step: make the folder table match the server's listing.

Folders are matched by ``remote_id``: a MAILBOXID (RFC 8474), label id or
Graph folder id survives a rename, so a folder whose path changed keeps its
index. An IMAP server without MAILBOXID has only paths, and UIDVALIDITY is
no proof (Dovecot derives it from the clock, so a folder deleted and one
created in the same second share it): there the provider must show more
evidence that a new path is an old folder renamed, and when in doubt the
folder is indexed anew, which costs time, never correctness.

A folder missing from one listing is not dropped at once (servers leave
folders out of a LIST under load, or mid-rename): only when the server
says it does not exist, or after several listings in a row without it.

A changed server or login is another mailbox: everything indexed from the
old one is dropped, unless the server proves it is the same mailbox (a
known MAILBOXID in its listing).
"""

import dataclasses
import logging

_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FolderChanges:
    created: list = dataclasses.field(default_factory=list)
    renamed: list = dataclasses.field(default_factory=list)  # (old path, new path)
    deleted: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)

    @property
    def changed(self):
        return bool(self.created or self.renamed or self.deleted)


def discover_folders(run):
    ctx, mailbox = run.ctx, run.mailbox
    listed = mailbox.list_folders()
    remote = {folder.remote_id: folder for folder in listed}
    local = {folder.remote_id: folder for folder in _adopt_ids(run, listed)}
    changes = FolderChanges()

    appeared = [folder for key, folder in remote.items() if key not in local]
    vanished = [folder for key, folder in local.items() if key not in remote]
    renamed = _match_renames(run, appeared, vanished)
    renamed_old = {old.id for _new, old in renamed}
    renamed_new = {new.remote_id for new, _old in renamed}
    new_folders = [new for new in appeared if new.remote_id not in renamed_new]
    # Folders that keep their identity under another path: renames proven by
    # evidence, and folders with a stable id whose path changed.
    moves = [(old, new) for new, old in renamed] + [
        (state, remote[key]) for key, state in local.items() if key in remote and remote[key].path != state.path]

    # A path that the listing gives to another folder is no longer this one's.
    taken_paths = {new.path for new in new_folders} | {new.path for _old, new in moves}
    for old_state in vanished:
        if old_state.id in renamed_old:
            continue
        if old_state.path in taken_paths or _gone(run, old_state, changes):
            ctx.folders.delete(old_state.id)
            changes.deleted.append(old_state.path)
            run.report.folders_reset.add(old_state.id)
    # Paths are unique per account, and renames can chain (Old→Older, New→Old)
    # or swap: every moving folder steps aside first, then takes its new path.
    for old_state, _new in moves:
        ctx.folders.park(old_state.id)
    for old_state, new_remote in moves:
        ctx.folders.update_remote(old_state.id, new_remote)
        changes.renamed.append((old_state.path, new_remote.path))
    for key, state in local.items():
        current = remote.get(key)
        if current is None:
            continue
        if state.missing_runs:
            ctx.folders.record_missing(state.id, 0)
        if current.path == state.path and (current.role, current.selectable) != (state.role, state.selectable):
            ctx.folders.update_remote(state.id, current)
    for new_remote in new_folders:
        ctx.folders.insert(run.account_id, new_remote)
        changes.created.append(new_remote.path)

    ctx.accounts.mark_folders_synced(run.account_id)
    if changes.changed or changes.missing:
        _logger.info("Account %s folders: %s", run.account_id, changes)
    if changes.created:
        ctx.scheduler.wake_bootstrap()  # committed with the new folders
    run.checkpoint()
    return changes


def _adopt_ids(run, listed):
    """Folders known by path only take the stable id the server now gives for that path."""
    by_path = {folder.path: folder for folder in listed}
    local = run.ctx.folders.list_for_account(run.account_id)
    for state in local:
        current = by_path.get(state.path)
        if state.remote_id == state.path and current is not None and current.remote_id != state.path:
            run.ctx.folders.update_remote(state.id, current)
            state.remote_id = current.remote_id
    return local


def _gone(run, state, changes):
    """Drop a folder only on the server's word, or after it stayed away from several listings."""
    if run.mailbox.confirm_gone(state):
        return True
    runs = state.missing_runs + 1
    if runs >= run.settings.missing_listings:
        return True
    run.ctx.folders.record_missing(state.id, runs)
    changes.missing.append(state.path)
    return False


def _match_renames(run, appeared, vanished):
    """Pairs (new remote folder, old local state) the provider shows to be one folder.

    Only one-to-one candidates are asked about: a vanished folder whose path
    was its id (no MAILBOXID) against appeared folders of the same kind.
    """
    pairs, used = [], set()
    for old in vanished:
        if old.remote_id != old.path or not old.uidvalidity:
            continue  # a stable id that disappeared is a deleted folder; a never-opened one has no evidence
        sample = run.ctx.index.newest(old.id)
        for new in appeared:
            if new.remote_id in used or new.remote_id != new.path or not new.selectable:
                continue
            if run.mailbox.same_folder(old, new, sample):
                pairs.append((new, old))
                used.add(new.remote_id)
                break
    return pairs


def check_identity(run):
    """A different mailbox behind the same account record starts from nothing.

    Checked before any work of any use case (backfill does no discovery), so
    no step ever files one mailbox's messages under another's folders.
    """
    ctx, identity = run.ctx, run.mailbox.identity
    known = ctx.accounts.identity(run.account_id)
    if known == identity:
        return
    if known is not None:
        local = ctx.folders.list_for_account(run.account_id)
        stable = {f.remote_id for f in local if f.remote_id != f.path}
        if not stable or not stable & {f.remote_id for f in run.mailbox.list_folders()}:
            _logger.warning("Account %s now points at another mailbox (%s, was %s): dropping what was "
                            "indexed from the old one.", run.account_id, identity, known)
            for folder in local:
                ctx.folders.delete(folder.id)
                run.report.folders_reset.add(folder.id)
            run.ctx.scheduler.wake_bootstrap()
    ctx.accounts.set_identity(run.account_id, identity)
    run.checkpoint()
