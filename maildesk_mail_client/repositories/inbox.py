"""The inbox's reads of ``maildesk_message_index``: pages, threads, search and folder counts.

Every statement takes ``account_ids``, the accounts the caller may read (the
Odoo side works them out through the ORM, as the user), and applies it: no
scope, cursor or query can reach a row of another account.

**Order and keyset.** Newest first: rows with a date by ``(date DESC, id
DESC)``, then the few rows without one (a message the server refused to
describe) by ``id DESC``. A page ends with a cursor ``(date, id)`` of its
last row (``date`` None for an undated row), and the next page is what sorts
after it, so every row of a folder is reached exactly once, however many
rows share a date. Each page is read off the btree indexes in that order
(``inbox_list``: account, folder, date DESC, id DESC, live rows; ``account_date``
across an account's folders) and stops after ``limit + 1`` rows: the first
page of a million-row folder costs what the first page of a small one does.
A scope over several folders or accounts (all inboxes, everywhere) reads
each in index order and merges the few rows each gives.

**Threads.** One row per (account, thread key) among the rows that match the
scope and the query: the thread's newest matching message stands for it,
with the count of matching messages. A row is a thread's newest when no
newer matching row of the same thread exists (one probe of the thread key
index per row read), so the keyset runs over the threads' newest messages
and thread pages are as complete as message pages.

**Search** (``application/search_query.SearchQuery``): free words over one
document (subject, sender, To, Cc, snippet), ``from:``, ``to:``, ``subject:``
each over their own column's document, through GIN indexes on
``to_tsvector('simple', …)`` expressions (repositories/fulltext.py); the
last word typed matches as a prefix. Flags and dates are plain conditions.
PostgreSQL picks, per folder or account, between reading the GIN index and
sorting the few matches, and walking the date index and testing each row
(a word that is in most messages).
"""

import dataclasses
import datetime as dt

from ..application.search_query import SearchQuery
from .fulltext import document, text_of
from .message_index import TABLE

#: Over this many folders or accounts, a scope is read in one go and sorted
#: instead of merged from one index walk each.
MAX_MERGED = 32

_COLUMNS = (
    "id", "account_id", "folder_id", "thread_key", "subject", "from_address", "to_addresses",
    "snippet", "date", "is_seen", "is_flagged", "has_attachments",
)


@dataclasses.dataclass(frozen=True)
class Scope:
    """Where to list: ``folder`` (id), ``account`` (id), ``all_inboxes`` or ``everywhere``."""

    kind: str
    id: int | None = None

    FOLDER = "folder"
    ACCOUNT = "account"
    ALL_INBOXES = "all_inboxes"
    EVERYWHERE = "everywhere"


@dataclasses.dataclass(frozen=True)
class InboxRow:
    id: int
    account_id: int
    folder_id: int
    thread_key: str | None
    subject: str | None
    from_address: str | None
    to_addresses: str | None
    snippet: str | None
    date: dt.datetime | None
    is_seen: bool
    is_flagged: bool
    has_attachments: bool
    thread_count: int = 1
    thread_unread: int = 0

    @property
    def cursor(self):
        return (self.date, self.id)


@dataclasses.dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: tuple | None  # (date or None, id) of the last row, when more rows follow


@dataclasses.dataclass
class _Sql:
    """A condition (or a list of them) and its parameters, in order."""

    parts: list = dataclasses.field(default_factory=list)
    params: list = dataclasses.field(default_factory=list)

    def add(self, sql, *params):
        self.parts.append(sql)
        self.params.extend(params)
        return self

    def extend(self, other):
        self.parts.extend(other.parts)
        self.params.extend(other.params)
        return self

    def where(self):
        return " AND ".join(self.parts) if self.parts else "TRUE"


def tsquery(terms):
    """``to_tsquery`` text for terms: each term's words AND-ed (or in sequence for a phrase),
    the last word as a prefix when the term says so; None when no term has a word.

    Words are runs of letters and digits (search_query.tokens), so quoting them
    needs no escaping; ``to_tsquery('simple', …)`` then parses and lower-cases
    each one as the indexed text was.
    """
    parts = []
    for term in terms:
        words = [f"'{word}'" for word in term.words]
        if not words:
            continue
        if term.prefix:
            words[-1] += ":*"
        parts.append("(" + (" <-> " if term.phrase else " & ").join(words) + ")")
    return " & ".join(parts) or None


def _filters(alias, query, after=None, before=None):
    """The search's conditions on rows of ``alias``."""
    sql = _Sql()
    for name, terms in (("all", query.words), ("from", query.from_), ("to", query.to), ("subject", query.subject)):
        text = tsquery(terms)
        if text:
            sql.add(f"{document(name, alias)} @@ to_tsquery('simple'::regconfig, %s)", text)
            hint = _substring_hint(terms)
            if hint:
                # Implied by the match (a stored word is a piece of the text, lower-cased), and some 25
                # times cheaper to test on a row than computing its tsvector: PostgreSQL tests the
                # cheaper condition first, so a walk down the date index computes few tsvectors.
                sql.add(f"strpos(lower({text_of(name, alias)}), lower(%s)) > 0", hint)
    if query.has_attachment:
        sql.add(f"{alias}.has_attachments")
    if query.unread is True:
        sql.add(f"{alias}.is_seen IS NOT TRUE")
    elif query.unread is False:
        sql.add(f"{alias}.is_seen")
    if query.flagged:
        sql.add(f"{alias}.is_flagged")
    if after is not None:
        sql.add(f"{alias}.date >= %s", after)
    if before is not None:
        sql.add(f"{alias}.date < %s", before)
    return sql


def _substring_hint(terms):
    """The longest plain ASCII word of the terms (it is in the text of any row that matches)."""
    plain = [word for term in terms for word in term.words if word.isascii() and word.isalnum()]
    return max(plain, key=len) if plain else None


def _newer(newer, older):
    """``newer`` sorts before ``older`` (dated rows first, then by date and id, descending)."""
    return (f"({newer}.date > {older}.date OR ({newer}.date = {older}.date AND {newer}.id > {older}.id)"
            f" OR ({older}.date IS NULL AND ({newer}.date IS NOT NULL OR {newer}.id > {older}.id)))")


def _select(alias):
    return ", ".join(f"{alias}.{column}" for column in _COLUMNS)


class InboxRepository:
    def __init__(self, cr):
        self.cr = cr

    # ------------------------------------------------------------------
    # scopes
    # ------------------------------------------------------------------

    def folder_account(self, folder_id):
        """The account of a folder, or None when there is no such folder."""
        self.cr.execute("SELECT account_id FROM maildesk_folder WHERE id = %s", [folder_id])
        row = self.cr.fetchone()
        return row[0] if row else None

    def inbox_folders(self, account_ids):
        """``[(folder id, account id)]`` of the inbox folders of these accounts."""
        self.cr.execute(
            "SELECT id, account_id FROM maildesk_folder WHERE role = 'inbox' AND account_id = ANY(%s) ORDER BY id",
            [list(account_ids)],
        )
        return [tuple(row) for row in self.cr.fetchall()]

    def _units(self, account_ids, scope):
        """What to read for a scope: ``(units, thread_scope)``.

        Each unit is a condition on ``m`` that one btree index returns in
        ``(date DESC, id DESC)`` order; ``thread_scope`` is the scope as a
        condition on ``n``, another row of the same account (threads count
        and compare only rows of the scope).
        """
        account_ids = sorted({int(a) for a in account_ids})
        if not account_ids:
            return [], None
        if scope.kind == Scope.FOLDER:
            account_id = self.folder_account(scope.id)
            if account_id not in account_ids:
                return [], None
            return ([_Sql().add("m.account_id = %s", account_id).add("m.folder_id = %s", scope.id)
                    .add("NOT m.deleted_on_server")], _Sql().add("n.folder_id = %s", scope.id))
        if scope.kind == Scope.ACCOUNT:
            if scope.id not in account_ids:
                return [], None
            return self._account_units([scope.id])
        if scope.kind == Scope.ALL_INBOXES:
            folders = self.inbox_folders(account_ids)
            if not folders:
                return [], None
            thread_scope = _Sql().add("n.folder_id = ANY(%s)", [folder for folder, _account in folders])
            if len(folders) > MAX_MERGED:
                return ([_Sql().add("m.account_id = ANY(%s)", account_ids)
                         .add("m.folder_id = ANY(%s)", [folder for folder, _account in folders])
                         .add("NOT m.deleted_on_server")], thread_scope)
            return ([_Sql().add("m.account_id = %s", account).add("m.folder_id = %s", folder)
                     .add("NOT m.deleted_on_server") for folder, account in folders], thread_scope)
        if scope.kind == Scope.EVERYWHERE:
            return self._account_units(account_ids)
        raise ValueError(f"unknown scope {scope!r}")

    def _account_units(self, account_ids):
        """Whole accounts, each message once.

        A Gmail message is a row in each of its labels, so a Gmail account is
        read through the folders that hold every message exactly once: All
        Mail (everything but spam and trash), Spam and Trash. Other accounts
        file a message in one folder and are read whole.
        """
        labels = self._label_accounts(account_ids)
        once = sorted(folder for folders in labels.values() for folder in folders)
        thread_scope = _Sql()
        if labels:
            thread_scope.add("(n.account_id <> ALL(%s) OR n.folder_id = ANY(%s))", sorted(labels), once)
        plain = [account for account in account_ids if account not in labels]
        units = [(account, None) for account in plain] + [
            (account, folder) for account, folders in labels.items() for folder in folders]
        if len(units) > MAX_MERGED:
            unit = _Sql().add("m.account_id = ANY(%s)", account_ids).add("NOT m.deleted_on_server")
            if labels:
                unit.add("(m.account_id <> ALL(%s) OR m.folder_id = ANY(%s))", sorted(labels), once)
            return [unit], thread_scope
        return [_Sql().add("m.account_id = %s", account).add("m.folder_id = %s", folder).add("NOT m.deleted_on_server")
                if folder is not None else _Sql().add("m.account_id = %s", account).add("NOT m.deleted_on_server")
                for account, folder in units], thread_scope

    def _label_accounts(self, account_ids):
        """``{account id: [folder ids]}`` of the Gmail accounts among these: their All Mail, Spam and Trash."""
        self.cr.execute(
            """
            SELECT a.id, COALESCE(array_agg(f.id ORDER BY f.id) FILTER (WHERE f.id IS NOT NULL), '{}')
              FROM mailbox_account a
              LEFT JOIN maildesk_folder f ON f.account_id = a.id AND f.role IN ('all', 'junk', 'trash')
             WHERE a.id = ANY(%s) AND a.provider = 'gmail'
             GROUP BY a.id
            """,
            [sorted(account_ids)],
        )
        return {account: list(folders) for account, folders in self.cr.fetchall()}

    # ------------------------------------------------------------------
    # pages
    # ------------------------------------------------------------------

    def page(self, account_ids, scope, query=None, cursor=None, limit=50, threads=True, tz=None):
        """One page of a scope, newest first: a :class:`Page`.

        ``cursor`` is the ``next_cursor`` of the page before (None for the first);
        ``tz`` the user's time zone, in which ``before:``/``after:`` days are taken.
        """
        query = query or SearchQuery()
        after, before = query.date_bounds(tz)
        limit = max(1, int(limit))
        units, thread_scope = self._units(account_ids, scope)
        if not units:
            return Page([], None)
        cursor_date, cursor_id = cursor if cursor else (None, None)
        filters_m = _filters("m", query, after, before)
        representative = None
        if threads:
            # No newer matching row of the same thread in the scope. "IS NOT TRUE" keeps this a
            # probe per row read (a hash anti-join would read the whole scope before the first row).
            filters_n = _filters("n", query, after, before)
            representative = _Sql().add(
                f"EXISTS (SELECT 1 FROM {TABLE} n WHERE n.account_id = m.account_id AND n.thread_key = m.thread_key"
                f" AND NOT n.deleted_on_server AND {thread_scope.where()}"
                f" AND {filters_n.where()} AND {_newer('n', 'm')}) IS NOT TRUE",
                *thread_scope.params, *filters_n.params)
        branches = _Sql()
        for unit in units:
            for dated in (True, False):
                keyset = _Sql()
                if dated:
                    if cursor is None:
                        keyset.add("m.date IS NOT NULL")
                    elif cursor_date is None:
                        continue  # the cursor is among the undated rows: every dated row came before
                    else:
                        keyset.add("(m.date, m.id) < (%s, %s)", cursor_date, cursor_id)
                    order = "m.date DESC, m.id DESC"
                else:
                    keyset.add("m.date IS NULL")
                    if cursor is not None and cursor_date is None:
                        keyset.add("m.id < %s", cursor_id)
                    order = "m.id DESC"
                where = _Sql().extend(unit).extend(filters_m).extend(keyset)
                rows = f"SELECT {_select('m')} FROM {TABLE} m WHERE {where.where()} ORDER BY {order}"
                if representative:
                    # The probe runs on rows in order, as they are read, until the page is full:
                    # OFFSET 0 keeps it out of the scan (where it would run on every match of a
                    # search before the sort), and no outer ORDER BY lets the planner know that
                    # only the first rows are wanted.
                    branches.add(f"(SELECT * FROM ({rows} OFFSET 0) m WHERE {representative.where()} LIMIT %s)",
                                 *where.params, *representative.params, limit + 1)
                else:
                    branches.add(f"({rows} LIMIT %s)", *where.params, limit + 1)
        rows = self._rows(" UNION ALL ".join(branches.parts), branches.params, limit + 1,
                          thread_scope if threads else None, query, after, before)
        if len(rows) > limit:
            return Page(rows[:limit], rows[limit - 1].cursor)
        return Page(rows, None)

    def _rows(self, union, params, limit, thread_scope, query, after, before):
        counts = "1, CASE WHEN p.is_seen THEN 0 ELSE 1 END"
        lateral = ""
        params = [*params, limit]
        if thread_scope is not None:
            filters_n = _filters("n", query, after, before)
            lateral = (
                f" LEFT JOIN LATERAL (SELECT count(*) AS total, count(*) FILTER (WHERE n.is_seen IS NOT TRUE) AS unread"
                f" FROM {TABLE} n WHERE n.account_id = p.account_id AND n.thread_key = p.thread_key"
                f" AND NOT n.deleted_on_server AND {thread_scope.where()} AND {filters_n.where()}) t ON true")
            params += [*thread_scope.params, *filters_n.params]
            counts = ("CASE WHEN p.thread_key IS NULL THEN 1 ELSE t.total END,"
                      " CASE WHEN p.thread_key IS NULL THEN (CASE WHEN p.is_seen THEN 0 ELSE 1 END) ELSE t.unread END")
        self.cr.execute(
            f"""
            SELECT {_select('p')}, {counts}
              FROM (SELECT * FROM ({union}) u ORDER BY u.date IS NULL, u.date DESC, u.id DESC LIMIT %s) p
                   {lateral}
             ORDER BY p.date IS NULL, p.date DESC, p.id DESC
            """,
            params,
        )
        return [_row(values) for values in self.cr.fetchall()]

    def thread(self, account_ids, index_id, scope=None, query=None, tz=None):
        """The live messages of ``index_id``'s thread in a scope, oldest first (undated ones first).

        ``scope`` defaults to the message's folder, as a folder's list counts
        its threads; with the list's scope and query, the rows are the ones
        the list's ``thread_count`` counted.
        """
        query = query or SearchQuery()
        after, before = query.date_bounds(tz)
        self.cr.execute(
            f"SELECT account_id, folder_id, thread_key FROM {TABLE} WHERE id = %s AND account_id = ANY(%s)",
            [index_id, sorted(account_ids)],
        )
        found = self.cr.fetchone()
        if not found:
            return []
        account_id, folder_id, key = found
        if key is None:
            where = _Sql().add("n.id = %s", index_id)
        else:
            scope = scope or Scope(Scope.FOLDER, folder_id)
            _units, thread_scope = self._units(account_ids, scope)
            if thread_scope is None:
                return []
            where = (_Sql().add("n.account_id = %s", account_id).add("n.thread_key = %s", key)
                     .extend(thread_scope).extend(_filters("n", query, after, before)))
        self.cr.execute(
            f"""
            SELECT {_select('n')}, 1, CASE WHEN n.is_seen THEN 0 ELSE 1 END FROM {TABLE} n
             WHERE {where.where()} AND NOT n.deleted_on_server AND n.account_id = ANY(%s)
             ORDER BY n.date IS NOT NULL, n.date, n.id
            """,
            [*where.params, sorted(account_ids)],
        )
        return [_row(values) for values in self.cr.fetchall()]

    # ------------------------------------------------------------------
    # counts
    # ------------------------------------------------------------------

    def folder_counts(self, account_ids, folder_ids=None):
        """``{folder id: (unread, total)}`` of live rows, for folders that have any.

        ``folder_ids``: count only these folders (a live refresh: the folders a sync
        run changed), each an index range of ``inbox_list`` (account, folder, …);
        None counts every folder of the accounts.

        One GROUP BY over the accounts' rows: a read of the rows of these
        accounts (an index range when they are a small part of the table, the
        table otherwise). No index covers ``is_seen`` on purpose: a flag change
        then touches no indexed column and PostgreSQL makes it a HOT update,
        which writes no index entry (with an index on ``is_seen``, 1,000 read-flag
        changes took 63 ms instead of 12: every index written again, GIN tsvectors
        included; tests/bench/bench_inbox.py).
        """
        where, params = "account_id = ANY(%s)", [sorted(account_ids)]
        if folder_ids is not None:
            folder_ids = sorted({int(folder) for folder in folder_ids})
            if not folder_ids:
                return {}
            where += " AND folder_id = ANY(%s)"
            params.append(folder_ids)
        self.cr.execute(
            f"""
            SELECT folder_id, count(*) FILTER (WHERE is_seen IS NOT TRUE), count(*)
              FROM {TABLE}
             WHERE {where} AND NOT deleted_on_server
             GROUP BY account_id, folder_id
            """,
            params,
        )
        return {folder_id: (unread, total) for folder_id, unread, total in self.cr.fetchall()}


def _row(values):
    *columns, count, unread = values
    row = dict(zip(_COLUMNS, columns, strict=True))
    for flag in ("is_seen", "is_flagged", "has_attachments"):
        row[flag] = bool(row[flag])
    return InboxRow(**row, thread_count=int(count or 1), thread_unread=int(unread or 0))
