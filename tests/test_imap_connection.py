"""Connecting to a real Dovecot: each way it fails has its own kind and a sentence to act on."""

import contextlib
import dataclasses
import socket

import pytest

from maildesk_mail_client.application.errors import AuthenticationFailed, ConnectionFailed
from maildesk_mail_client.providers.imap import ImapConfig, ImapSessionAdapter, connect, probe
from maildesk_mail_client.providers.imap.connection import log_out

from .harness.dovecot import free_port


def config_for(account, **changes):
    config = ImapConfig(host=account.host, port=account.port, security="none", login=account.login,
                        password=account.password, timeout=5)
    return dataclasses.replace(config, **changes)


def connection_error(config) -> ConnectionFailed:
    with pytest.raises(ConnectionFailed) as caught:
        connect(config)
    return caught.value


@contextlib.contextmanager
def silent_server():
    """A port that accepts TCP connections (the kernel does, from the backlog) and never greets."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("security, port", [("none", "port"), ("starttls", "port"), ("ssl", "ssl_port")])
def test_each_security_mode_logs_in(imap_account, security, port):
    account = imap_account()
    config = config_for(account, security=security, port=getattr(account, port), verify_tls=False)
    client = connect(config)
    try:
        assert client.noop()
    finally:
        log_out(client)
    with ImapSessionAdapter.open(config) as session:
        assert "QRESYNC" in session.capabilities, "capabilities are read after login, not before TLS"


def test_unknown_host():
    error = connection_error(ImapConfig("imap.maildesk.invalid", 993, "ssl", "me", "pw", timeout=5))
    assert error.kind == "host"
    assert "imap.maildesk.invalid" in str(error) and "server name" in str(error)


def test_refused_port():
    port = free_port()
    error = connection_error(ImapConfig("127.0.0.1", port, "none", "me", "pw", timeout=5))
    assert error.kind == "refused"
    assert f"127.0.0.1:{port}" in str(error) and "port" in str(error)


def test_server_that_never_greets_times_out():
    with silent_server() as port:
        error = connection_error(ImapConfig("127.0.0.1", port, "ssl", "me", "pw", timeout=0.3))
        assert error.kind == "timeout"
        assert "did not answer within 0.3 s" in str(error)
        assert connection_error(ImapConfig("127.0.0.1", port, "none", "me", "pw", timeout=0.3)).kind == "timeout"


def test_plain_imap_to_the_imaps_port_times_out_with_a_hint(imap_account):
    account = imap_account()
    error = connection_error(config_for(account, port=account.ssl_port, timeout=0.5))
    assert error.kind == "timeout"
    assert "SSL/TLS" in str(error)


def test_ssl_to_the_plain_port_is_a_tls_failure(imap_account):
    account = imap_account()
    error = connection_error(config_for(account, security="ssl", verify_tls=False))
    assert error.kind == "tls"
    assert "TLS handshake" in str(error) and "STARTTLS port 143" in str(error)


@pytest.mark.parametrize("security, port", [("ssl", "ssl_port"), ("starttls", "port")])
def test_self_signed_certificate_is_refused_when_verifying(imap_account, security, port):
    account = imap_account()
    error = connection_error(config_for(account, security=security, port=getattr(account, port), verify_tls=True))
    assert error.kind == "tls"
    assert "not trusted" in str(error) and "self-signed" in str(error) and "Verify Certificate" in str(error)


def test_starttls_not_offered(imap_account, dovecot_plain):
    account = imap_account(dovecot_plain)
    error = connection_error(config_for(account, security="starttls"))
    assert error.kind == "tls"
    assert "does not offer STARTTLS" in str(error)


def test_wrong_password(imap_account):
    account = imap_account()
    with pytest.raises(AuthenticationFailed) as caught:
        connect(config_for(account, password="wrong"))
    assert str(caught.value) == (f"127.0.0.1:{account.port} rejected the login '{account.login}': "
                                 "[AUTHENTICATIONFAILED] Authentication failed. Check the login and the password "
                                 "(some providers require an app password).")
    assert not caught.value.transient


def test_probe_names_the_notable_capabilities(imap_account, dovecot_basic):
    full = probe(config_for(imap_account()))
    assert "logged in as" in full
    assert "IDLE, CONDSTORE, QRESYNC, SPECIAL-USE, UIDPLUS, MOVE" in full
    basic = probe(config_for(imap_account(dovecot_basic)))
    assert "IDLE, SPECIAL-USE, UIDPLUS" in basic and "Without CONDSTORE" in basic


def test_probe_reports_failures_like_connect(imap_account):
    with pytest.raises(ConnectionFailed) as caught:
        probe(config_for(imap_account(), port=free_port()))
    assert caught.value.kind == "refused"


def test_session_open_translates_failures_too():
    with pytest.raises(ConnectionFailed) as caught:
        ImapSessionAdapter.open(ImapConfig("127.0.0.1", free_port(), "none", "me", "pw", timeout=5))
    assert caught.value.kind == "refused"


def test_config_rejects_an_unknown_security_and_hides_secrets():
    with pytest.raises(ValueError, match="security"):
        ImapConfig("h", 993, "tls", "me", "pw")
    config = ImapConfig("h", 993, "ssl", "me", "s3cret", oauth2_token="t0ken")
    assert "s3cret" not in repr(config) and "t0ken" not in repr(config)
