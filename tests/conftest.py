"""Fixtures shared by the engine tests. PostgreSQL's are in harness/pg_fixtures.py (see pyproject)."""

import pytest

from .harness.dovecot import BASIC_CAPABILITIES, DovecotServer, DovecotUnavailable

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
