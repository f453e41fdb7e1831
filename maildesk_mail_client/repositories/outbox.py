"""``maildesk_outbox``: the sender's claims and state transitions, in SQL.

Every transition is one guarded UPDATE (``WHERE state = ...``) so a row
moved by someone else meanwhile (an undo, another sender) is left alone;
claims take rows ``FOR UPDATE SKIP LOCKED`` so two senders never take the
same row. Callers commit after each transition: ``sending`` is durable
before any transport is called.
"""

import datetime as dt

from ..application.outgoing_mime import Outgoing, recipients
from ..application.sending import OutboxRow

TABLE = "maildesk_outbox"

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = ("state", "attempts", "last_attempt_at", "next_attempt_at", "last_error", "failure_kind", "sent_at",
           "sent_remote_id", "sent_filed", "handed_over", "own_copy_pending", "write_date")

_ROW = f"""
    SELECT o.id, o.account_id, o.message_id, o.mime, o.email_to, o.email_cc, o.email_bcc, o.state, o.attempts,
           COALESCE(o.max_attempts, 5), o.last_attempt_at, COALESCE(o.sent_filed, false), a.email,
           COALESCE(o.handed_over, false)
      FROM {TABLE} o JOIN mailbox_account a ON a.id = o.account_id
"""

#: unfiled Sent copies are retried for a day, then left to the next sync
_FILING_DAYS = 1


def _row(values) -> OutboxRow:
    (row_id, account_id, message_id, mime, to, cc, bcc, state, attempts, max_attempts, last_attempt_at,
     sent_filed, email, handed_over) = values
    envelope = recipients(Outgoing(from_name="", from_email=email or "", message_id=message_id or "",
                                   to=to or "", cc=cc or "", bcc=bcc or ""))
    return OutboxRow(id=row_id, account_id=account_id, message_id=message_id, mime=bytes(mime or b""),
                     envelope_from=email or "", recipients=tuple(envelope), state=state, attempts=attempts or 0,
                     max_attempts=max_attempts, last_attempt_at=last_attempt_at, sent_filed=sent_filed,
                     handed_over=handed_over)


class OutboxRepository:
    def __init__(self, cr):
        self.cr = cr

    def due_accounts(self, now, providers, own_copy_window=3600):
        """Accounts with something to send, to prove, or a Sent copy to file."""
        self.cr.execute(
            f"""
            SELECT DISTINCT o.account_id FROM {TABLE} o JOIN mailbox_account a ON a.id = o.account_id
             WHERE COALESCE(a.active, true) AND a.provider = ANY(%(providers)s)
               AND ((o.state = 'queued' AND o.send_after <= %(now)s
                     AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %(now)s))
                    OR (o.state = 'sending' AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %(now)s))
                    OR (o.state = 'sent' AND NOT COALESCE(o.sent_filed, false)
                        AND o.sent_at > %(now)s - interval '{_FILING_DAYS} day'
                        AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %(now)s))
                    OR (o.state = 'sent' AND o.own_copy_pending AND o.sent_at > %(own_since)s
                        AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %(now)s)))
             ORDER BY o.account_id
            """,
            {"now": now, "providers": list(providers), "own_since": now - dt.timedelta(seconds=own_copy_window)},
        )
        return [account_id for (account_id,) in self.cr.fetchall()]

    def next_wake(self, now):
        """When the sender has work next (a backoff or an undo window ending), or None."""
        self.cr.execute(
            f"""
            SELECT MIN(GREATEST(COALESCE(next_attempt_at, send_after), send_after)) FROM {TABLE}
             WHERE state = 'queued' AND send_after IS NOT NULL
            UNION ALL
            SELECT MIN(next_attempt_at) FROM {TABLE} WHERE state IN ('sending', 'sent') AND next_attempt_at > %s
            """,
            [now],
        )
        times = [when for (when,) in self.cr.fetchall() if when is not None]
        return min(times) if times else None

    def in_flight(self, account_id, now):
        """Rows left in ``sending``: a crash, or an answer lost. Locked, so no other sender proves them too."""
        self.cr.execute(
            _ROW + """
             WHERE o.account_id = %s AND o.state = 'sending' AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %s)
             ORDER BY o.id FOR UPDATE OF o SKIP LOCKED
            """,
            [account_id, now],
        )
        return [_row(values) for values in self.cr.fetchall()]

    def unfiled(self, account_id, now):
        self.cr.execute(
            _ROW + f"""
             WHERE o.account_id = %s AND o.state = 'sent' AND NOT COALESCE(o.sent_filed, false)
               AND o.sent_at > %s - interval '{_FILING_DAYS} day'
               AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %s)
             ORDER BY o.id FOR UPDATE OF o SKIP LOCKED
            """,
            [account_id, now, now],
        )
        return [_row(values) for values in self.cr.fetchall()]

    def own_copies_pending(self, account_id, now, window):
        """Sent rows whose own copy (the proof) was not in INBOX yet when the Sent copy was filed."""
        # Past the window the copy is left where it is (it may have been read, moved, filtered).
        self.cr.execute(f"""UPDATE {TABLE} SET own_copy_pending = false, next_attempt_at = NULL
                             WHERE account_id = %s AND state = 'sent' AND own_copy_pending
                               AND sent_at <= %s""", [account_id, now - dt.timedelta(seconds=window)])
        self.cr.execute(
            _ROW + """
             WHERE o.account_id = %s AND o.state = 'sent' AND o.own_copy_pending
               AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %s)
             ORDER BY o.id FOR UPDATE OF o SKIP LOCKED
            """,
            [account_id, now],
        )
        return [_row(values) for values in self.cr.fetchall()]

    def own_copy_done(self, row_id, now, retry_at=None):
        """``retry_at`` None: removed (or nothing to remove); else look again then."""
        self.cr.execute(
            f"""UPDATE {TABLE} SET own_copy_pending = %s, next_attempt_at = %s, write_date = %s
                 WHERE id = %s AND state = 'sent'""",
            [retry_at is not None, retry_at, now, row_id])

    def mark_handover(self, row_id, now):
        """The transport starts handing the whole message over: from now on it may be accepted."""
        self.cr.execute(f"UPDATE {TABLE} SET handed_over = true WHERE id = %s AND state = 'sending'", [row_id])

    def fail_inactive(self, now, message):
        """Rows of archived accounts are never sent: fail them with a reason instead of leaving them queued.
        One caught in ``sending`` (archived mid-send) may have gone out: its kind is unknown."""
        self.cr.execute(
            f"""UPDATE {TABLE} o SET state = 'failed', last_error = %s,
                       failure_kind = CASE WHEN o.state = 'sending' THEN 'unknown' ELSE 'permanent' END,
                       next_attempt_at = NULL, write_date = %s
                  FROM mailbox_account a
                 WHERE a.id = o.account_id AND NOT COALESCE(a.active, true) AND o.state IN ('queued', 'sending')""",
            [message, now])
        return self.cr.rowcount

    def claim_next(self, account_id, now):
        """The oldest due queued row of the account, now ``sending`` with one more attempt; or None."""
        self.cr.execute(
            f"""
            UPDATE {TABLE} SET state = 'sending', attempts = COALESCE(attempts, 0) + 1, last_attempt_at = %(now)s,
                   next_attempt_at = NULL, handed_over = false, write_date = %(now)s
             WHERE id = (SELECT id FROM {TABLE}
                          WHERE account_id = %(account)s AND state = 'queued' AND send_after <= %(now)s
                            AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
                          ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,
            {"account": account_id, "now": now},
        )
        found = self.cr.fetchone()
        return self.get(found[0]) if found else None

    def reattempt(self, row_id, now):
        """A row in ``sending`` proven not sent: one more attempt, starting now."""
        self.cr.execute(
            f"""UPDATE {TABLE} SET attempts = COALESCE(attempts, 0) + 1, last_attempt_at = %s, next_attempt_at = NULL,
                       handed_over = false, write_date = %s WHERE id = %s AND state = 'sending'""",
            [now, now, row_id])
        return self.cr.rowcount == 1

    def get(self, row_id):
        self.cr.execute(_ROW + " WHERE o.id = %s", [row_id])
        values = self.cr.fetchone()
        return _row(values) if values else None

    def mark_sent(self, row_id, now, remote_id=None, filed=False):
        self.cr.execute(
            f"""UPDATE {TABLE} SET state = 'sent', sent_at = %s, sent_remote_id = %s, sent_filed = %s,
                       last_error = NULL, failure_kind = NULL, next_attempt_at = NULL, write_date = %s
                 WHERE id = %s AND state = 'sending'""",
            [now, remote_id, filed, now, row_id])
        return self.cr.rowcount == 1

    def mark_filed(self, row_id, now, remote_id=None, own_copy_retry_at=None):
        """``own_copy_retry_at``: the own copy was not in INBOX yet; look for it again then."""
        self.cr.execute(
            f"""UPDATE {TABLE} SET sent_filed = true, sent_remote_id = COALESCE(%s, sent_remote_id),
                       own_copy_pending = %s, next_attempt_at = %s, write_date = %s
                 WHERE id = %s AND state = 'sent'""",
            [remote_id, own_copy_retry_at is not None, own_copy_retry_at, now, row_id])

    def filing_failed(self, row_id, now, retry_at, message):
        self.cr.execute(
            f"""UPDATE {TABLE} SET next_attempt_at = %s, last_error = %s, write_date = %s
                 WHERE id = %s AND state = 'sent'""",
            [retry_at, message, now, row_id])

    def defer(self, row_id, now, retry_at, message):
        """Not sent, try again at ``retry_at``."""
        self.cr.execute(
            f"""UPDATE {TABLE} SET state = 'queued', next_attempt_at = %s, last_error = %s, failure_kind = 'temporary',
                       write_date = %s WHERE id = %s AND state = 'sending'""",
            [retry_at, message, now, row_id])

    def await_proof(self, row_id, now, check_at, message, handed_over=False):
        """Maybe sent: stays ``sending`` until the proof says which."""
        self.cr.execute(
            f"""UPDATE {TABLE} SET next_attempt_at = %s, last_error = %s, write_date = %s,
                       handed_over = COALESCE(handed_over, false) OR %s
                 WHERE id = %s AND state = 'sending'""",
            [check_at, message, now, handed_over, row_id])

    def fail(self, row_id, now, message, kind):
        self.cr.execute(
            f"""UPDATE {TABLE} SET state = 'failed', last_error = %s, failure_kind = %s, next_attempt_at = NULL,
                       write_date = %s WHERE id = %s AND state = 'sending'""",
            [message, kind, now, row_id])
        return self.cr.rowcount == 1

    def fail_queued(self, account_id, now, message, kind):
        """Every queued row of the account at once: each attempt would only be another refused login."""
        self.cr.execute(
            f"""UPDATE {TABLE} SET state = 'failed', last_error = %s, failure_kind = %s, next_attempt_at = NULL,
                       write_date = %s WHERE account_id = %s AND state = 'queued'""",
            [message, kind, now, account_id])
        return self.cr.rowcount
