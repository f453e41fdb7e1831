"""Large index tables for the inbox's tests and benchmarks, in one INSERT … SELECT each.

Rows look like mail: subjects drawn from a few hundred words, senders from
a few thousand people at a few dozen domains, recipients, Cc, snippets,
conversations of one to five messages, a third unread, a few flagged, some
with attachments. ``fill_folder`` is deterministic (row ``g`` of a folder is
always the same), so a test can compute what a query must return.
"""

from maildesk_mail_client.repositories.message_index import TABLE

FIRST = ("Alice", "Bob", "Carol", "David", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
         "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yvonne", "Zoe",
         "Amelie", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas",
         "Kofi", "Lena", "Mateo", "Nora", "Oscar", "Priya", "Quentin", "Rosa", "Sami")
LAST = ("Smith", "Johnson", "Martin", "Dubois", "Garcia", "Muller", "Rossi", "Tanaka", "Nowak", "Silva",
        "Kowalski", "Jensen", "Nielsen", "Ivanov", "Haddad", "Okafor", "Larsen", "Moreau", "Fischer",
        "Weber", "Costa", "Novak", "Horvat", "Kim", "Chen", "Patel", "Singh", "Brown", "Wilson", "Taylor",
        "Anderson", "Thomas", "Moore", "Jackson", "White", "Harris", "Clark", "Lewis", "Young", "King",
        "Wright", "Lopez", "Hill", "Scott", "Green", "Adams", "Baker", "Nelson", "Carter", "Mitchell")
DOMAINS = ("example.com", "example.org", "acme.test", "globex.test", "initech.test", "umbrella.test",
           "hooli.test", "piedpiper.test", "wayne.test", "stark.test", "cyberdyne.test", "tyrell.test",
           "soylent.test", "wonka.test", "gringotts.test", "oscorp.test", "aperture.test", "blackmesa.test",
           "vandelay.test", "dundermifflin.test", "monsters.test", "prestige.test", "sterling.test",
           "bluth.test", "krusty.test", "nakatomi.test", "weyland.test", "massive.test", "virtucon.test",
           "duff.test", "contoso.test")
TOPICS = ("invoice", "meeting", "quarterly", "report", "project", "budget", "review", "release", "contract",
          "travel", "expenses", "roadmap", "hiring", "interview", "offer", "launch", "design", "security",
          "incident", "outage", "backup", "migration", "database", "customer", "support", "ticket",
          "newsletter", "webinar", "conference", "workshop", "training", "policy", "holiday", "schedule",
          "payroll", "benefits", "insurance", "shipment", "order", "delivery", "refund", "payment",
          "subscription", "renewal", "license", "audit", "compliance", "marketing", "campaign", "survey",
          "feedback", "proposal", "estimate", "quote", "agenda", "minutes", "summary", "update", "status",
          "reminder", "deadline", "draft", "final", "approval", "signature", "onboarding", "offboarding",
          "laptop", "printer", "network", "password", "account", "access", "permissions", "vendor",
          "partner", "lunch", "dinner", "party", "birthday", "anniversary", "photos", "slides", "notes")
QUALIFIERS = ("urgent", "weekly", "monthly", "annual", "new", "revised", "pending", "approved", "overdue",
              "confirmed", "cancelled", "postponed", "updated", "preliminary", "internal", "external",
              "important", "follow-up", "second", "last")
WORDS = ("please", "find", "attached", "the", "latest", "version", "of", "our", "document", "let", "me",
         "know", "if", "you", "have", "any", "questions", "thanks", "regards", "see", "below", "for",
         "details", "we", "need", "to", "discuss", "this", "before", "friday", "can", "call", "tomorrow",
         "morning", "afternoon", "numbers", "look", "good", "bad", "team", "agreed", "with", "plan",
         "next", "steps", "are", "as", "follows", "kind", "best", "cheers", "hello", "hi", "dear", "all")


def _array(values):
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values, expr):
    """SQL: one of ``values`` chosen by the integer expression ``expr`` (deterministic)."""
    return f"({_array(values)})[1 + mod(({expr})::int8, {len(values)})]"


#: the sender of row g: about 2,000 people (40 x 50) at 31 domains
_FIRST = _pick(FIRST, "g * 7 + g / 97")
_LAST = _pick(LAST, "g * 13 + g / 41")
_DOMAIN = _pick(DOMAINS, "g * 3 + g / 53")
_TOPIC_1 = _pick(TOPICS, "g / 3 * 31 + g / 1001")  # rows of one conversation share their topics
_TOPIC_2 = _pick(TOPICS, "g / 3 * 17 + g / 211")
_QUALIFIER = _pick(QUALIFIERS, "g / 3 * 11")
_SNIPPET = " || ' ' || ".join(_pick(WORDS, f"g * {p} + g / {q}") for p, q in
                              ((3, 7), (5, 11), (7, 13), (11, 17), (13, 19), (17, 23), (19, 29), (23, 31)))


def fill_folder(cr, account_id, folder_id, count, *, start=1, undated_every=0, deleted_every=0,
                same_date_every=1, thread_size=3):
    """``count`` rows in one statement; row ``g`` (``start`` .. ``start + count - 1``):

    - dated 2010-01-01 + g minutes, except every ``undated_every``-th row (no date);
      with ``same_date_every`` > 1, runs of that many rows share one date (keyset ties);
    - every ``deleted_every``-th row deleted on the server;
    - conversations of ``thread_size`` consecutive rows (thread key ``t<folder>.<g / size>``);
    - unread when g % 3 == 0, flagged when g % 37 == 0, attachments when g % 5 == 0.
    """
    date = f"timestamp '2010-01-01' + (g / {int(same_date_every)}) * interval '1 minute'"
    if undated_every:
        date = f"CASE WHEN mod(g, {int(undated_every)}) = 0 THEN NULL ELSE {date} END"
    deleted = f"mod(g, {int(deleted_every)}) = 0" if deleted_every else "false"
    cr.execute(
        f"""
        INSERT INTO {TABLE} (
            account_id, folder_id, provider, remote_id, uid, delivery_key, message_id, thread_key,
            subject, from_address, to_addresses, cc_addresses, date, internal_date, size,
            is_seen, is_flagged, is_answered, is_draft, has_attachments, snippet, modseq,
            deleted_on_server, needs_refetch, fetch_attempts, create_date, write_date)
        SELECT %(account)s, %(folder)s, 'imap', g::text, g,
               %(account)s || ':imap:' || %(folder)s || ':' || g,
               '<' || %(folder)s || '.' || g || '@bench.maildesk.test>',
               't' || %(folder)s || '.' || g / {int(thread_size)},
               CASE WHEN mod(g, {int(thread_size)}) = 0 THEN '' ELSE 'Re: ' END
                   || initcap({_QUALIFIER}) || ' ' || {_TOPIC_1} || ' ' || {_TOPIC_2} || ' #' || g / {int(thread_size)},
               {_FIRST} || ' ' || {_LAST}
                   || ' <' || lower({_FIRST}) || '.' || lower({_LAST}) || '@' || {_DOMAIN} || '>',
               'Team ' || {_pick(TOPICS, "g / 7")}
                   || ' <' || {_pick(TOPICS, "g / 7")} || '@' || {_DOMAIN} || '>, me@example.com',
               CASE WHEN mod(g, 4) = 0 THEN lower({_pick(FIRST, "g * 5")}) || '@' || {_pick(DOMAINS, "g * 11")} END,
               {date},
               timestamp '2010-01-01' + g * interval '1 minute',
               2000 + mod(g * 37, 90000),
               mod(g, 3) <> 0, mod(g, 37) = 0, false, false, mod(g, 5) = 0,
               {_SNIPPET}, g,
               {deleted}, false, 0, now(), now()
          FROM generate_series(%(start)s, %(end)s) AS g
        """,
        {"account": account_id, "folder": folder_id, "start": start, "end": start + count - 1},
    )
    return cr.rowcount


def create_folder(cr, account_id, path, role="other"):
    cr.execute(
        """
        INSERT INTO maildesk_folder (account_id, path, remote_id, name, role, sync_state, backfill_state)
        VALUES (%s, %s, %s, %s, %s, 'incremental', 'done') RETURNING id
        """,
        [account_id, path, path, path.rsplit("/", 1)[-1], role],
    )
    return cr.fetchone()[0]
