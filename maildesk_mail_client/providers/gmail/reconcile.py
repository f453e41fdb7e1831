"""One folder compared with Gmail by message id, after the history expired.

The label's ids come from ``messages.list`` (500 a round trip), and its
unread, starred and draft members from the same listing AND-ed with
those labels, so the flags of every indexed message are known without
reading one message: the engine stores only the flags that differ, so no
hook fires for unchanged rows. Messages the index lacks are read
(batched ``messages.get``) and upserted; indexed ones the label no longer
has are removed. Nothing is purged and indexed again.

Steps of at most ``settings.chunk`` messages each, committed one by one.
A pass cut short keeps ``reconcile_cursor`` set, so the next pass
reconciles again; the listing is redone (its cost is 1/100 of reading
the messages), and what the cut pass stored is now known, so it is not
read twice.
"""

from __future__ import annotations

from ...application.domain import Delta, Flags, FlagUpdate

#: the value of ``reconcile_cursor`` while a reconciliation is under way (a pass resumes by listing again)
RUNNING = "listing"
MAX_STEP = 500


def reconcile_folder(mailbox, folder, known, settings):
    label = folder.remote_id
    server = mailbox.list_ids(label)
    on_server = set(server)
    unread = set(mailbox.list_ids(label, ("UNREAD",))) if server else set()
    starred = on_server if label == "STARRED" else set(mailbox.list_ids(label, ("STARRED",))) if server else set()
    drafts = on_server if label == "DRAFT" else set(mailbox.list_ids(label, ("DRAFT",))) if server else set()
    indexed = known.remote_ids()
    step = max(1, min(settings.chunk, MAX_STEP))

    missing = [message_id for message_id in server if message_id not in indexed]
    for first in range(0, len(missing), step):
        chunk = missing[first:first + step]
        found = mailbox.metadata(chunk, f"reading messages of {folder.path!r}")
        # Read after the listing: a message that left the label meanwhile is the feed's to place.
        upserts = tuple(found[message_id][0] for message_id in chunk
                        if found.get(message_id) and label in found[message_id][1])
        yield Delta(upserts=upserts, cursor={"reconcile_cursor": RUNNING})

    updates = [FlagUpdate(remote_id=message_id, flags=Flags(seen=message_id not in unread,
                                                            flagged=message_id in starred,
                                                            draft=message_id in drafts))
               for message_id in server if message_id in indexed]
    for first in range(0, len(updates), step):
        yield Delta(flags=tuple(updates[first:first + step]), cursor={"reconcile_cursor": RUNNING})

    yield Delta(removed=frozenset(indexed - on_server), cursor={"reconcile_cursor": None}, reconciled=True)
