"""The ids a full delta round of one folder listed so far, kept in the database, not in memory.

A full round (the first listing of a folder, a reconciliation, the restart
after Graph forgot a cursor) can span many runs: each page is committed
with its changes and the round resumes at the next page. What the index
holds and the round never listed is gone from the server; this table
remembers what was listed across those runs, in the same transaction as
each page, so a killed run neither forgets a listed id nor keeps one it
did not commit.
"""

TABLE = "maildesk_folder_seen"  # the model maildesk.folder.seen
_INDEX = "maildesk_message_index"


class FolderSeenRepository:
    def __init__(self, cr):
        self.cr = cr

    def remember(self, folder_id, remote_ids):
        if remote_ids:
            self.cr.execute(f"""INSERT INTO {TABLE} (folder_id, remote_id)
                                SELECT %s, unnest(%s::varchar[]) ON CONFLICT DO NOTHING""",
                            [folder_id, sorted(remote_ids)])

    def forget(self, folder_id, remote_ids=None):
        """Some ids (removed later in the round), or every one (a round starts over)."""
        if remote_ids is None:
            self.cr.execute(f"DELETE FROM {TABLE} WHERE folder_id = %s", [folder_id])
        elif remote_ids:
            self.cr.execute(f"DELETE FROM {TABLE} WHERE folder_id = %s AND remote_id = ANY(%s::varchar[])",
                            [folder_id, sorted(remote_ids)])

    def unlisted(self, folder_id):
        """The folder's live index rows the round did not list."""
        self.cr.execute(f"""SELECT i.remote_id FROM {_INDEX} i
                             WHERE i.folder_id = %s AND NOT i.deleted_on_server AND i.remote_id IS NOT NULL
                               AND NOT EXISTS (SELECT 1 FROM {TABLE} s
                                                WHERE s.folder_id = i.folder_id AND s.remote_id = i.remote_id)""",
                        [folder_id])
        return {remote_id for (remote_id,) in self.cr.fetchall()}

    def live_among(self, folder_id, remote_ids):
        """Which of ``remote_ids`` the index holds live in the folder (a page's worth, not the folder)."""
        if not remote_ids:
            return set()
        # Spelled so the partial (account_id, remote_id) index of non-IMAP rows serves it.
        self.cr.execute(f"""SELECT i.remote_id FROM {_INDEX} i
                             WHERE i.provider <> 'imap'
                               AND i.account_id = (SELECT account_id FROM maildesk_folder WHERE id = %s)
                               AND i.remote_id = ANY(%s::varchar[])
                               AND i.folder_id = %s AND NOT i.deleted_on_server""",
                        [folder_id, sorted(remote_ids), folder_id])
        return {remote_id for (remote_id,) in self.cr.fetchall()}
