"""A message the server refuses to FETCH never holds back the rest of its chunk."""

from maildesk_mail_client.providers.imap.connection import ImapConfig
from maildesk_mail_client.providers.imap.session import ImapSessionAdapter

from .harness.scripted_imap import ScriptedImapServer


def test_a_refused_message_becomes_a_flagged_row_and_the_others_are_indexed():
    subjects = [f"Message {n}" for n in range(1, 9)]
    with ScriptedImapServer(subjects, refused={3}) as server:
        config = ImapConfig(host=server.host, port=server.port, security="none", login="u", password="p", timeout=5)
        session = ImapSessionAdapter.open(config)
        try:
            assert session.select("INBOX").uidnext == 9
            metas = {meta.uid: meta for meta in session.fetch_metadata(range(1, 9))}
        finally:
            session.close()
    assert sorted(metas) == list(range(1, 9))
    assert "refused" in metas[3].parse_error
    good = [metas[uid] for uid in metas if uid != 3]
    assert all(meta.parse_error is None for meta in good)
    assert [meta.subject for meta in good] == [s for n, s in enumerate(subjects, 1) if n != 3]
    assert metas[5].from_address == "Ann <ann@example.com>" and metas[5].snippet == "hello"
