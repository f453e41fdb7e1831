"""Fixtures shared by the engine tests. PostgreSQL's are in harness/pg_fixtures.py (see pyproject)."""

import pytest

from .harness.dovecot import BASIC_CAPABILITIES, DovecotServer, DovecotUnavailable
from .harness.gmail_server import GmailServer
from .harness.graph_server import GraphServer

# ---------------------------------------------------------------------------
# IMAP: real Dovecot servers (tests/harness/dovecot.py)
# ---------------------------------------------------------------------------


def start_dovecot(**options) -> DovecotServer:
    """A started server, or a loud skip when Dovecot is not installed."""
    try:
        return DovecotServer(**options).start()
    except DovecotUnavailable as error:
        pytest.skip(f"NO IMAP SERVER, IMAP TESTS SKIPPED: {error}")


@pytest.fixture(scope="session")
def dovecot():
    """Dovecot with everything it offers: CONDSTORE, QRESYNC, SPECIAL-USE, STARTTLS, IMAPS."""
    server = start_dovecot()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_basic():
    """Dovecot that advertises no CONDSTORE or QRESYNC (profile C)."""
    server = start_dovecot(capabilities=BASIC_CAPABILITIES)
    yield server
    server.stop()


@pytest.fixture
def imap_account(dovecot):
    """Factory: ``imap_account()`` or ``imap_account(server)`` gives a fresh, empty mailbox."""

    def create(server=None):
        return (server or dovecot).add_user()

    return create


@pytest.fixture(scope="session")
def dovecot_plain():
    """Dovecot like an old server: no TLS at all (no STARTTLS, no IMAPS) and no SPECIAL-USE."""
    server = start_dovecot(tls=False, special_use=False)
    yield server
    server.stop()


@pytest.fixture
def gmail():
    """A local Gmail whose quota never gets in the way (the quota tests set their own)."""
    with GmailServer() as server:
        server.world.quota_per_minute = 10**9
        yield server


@pytest.fixture
def graph():
    """A local Graph and Azure AD over TLS."""
    with GraphServer() as server:
        yield server


@pytest.fixture
def hook_log(request, pg_db):
    """The table the hooks of every worker write to (named by the test module's ``HOOK_TABLE``):
    IMAP workers write the ``uid``, the others the ``remote_id``. Yields a query function."""
    conn = pg_db()
    with conn.cursor() as cr:
        cr.execute(f"""CREATE TABLE {request.module.HOOK_TABLE} (id serial PRIMARY KEY, who text, account_id int4,
                       folder_id int4, uid int8, remote_id text, index_id int4, is_new bool)""")
    conn.commit()

    def rows(sql, params=()):
        with conn.cursor() as cr:
            cr.execute(sql, list(params) if params else None)
            found = cr.fetchall()
        conn.commit()
        return found

    return rows
