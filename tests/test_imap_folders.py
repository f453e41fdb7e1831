"""Folder discovery on a real Dovecot: SPECIAL-USE roles, name fallback, modified UTF-7."""

import pytest

from maildesk_mail_client.application.domain import FolderRole, RemoteFolder
from maildesk_mail_client.application.errors import FolderNotFound
from maildesk_mail_client.providers.imap.folders import folders_from_list

from .harness.sync_world import open_session


def create_folders(account, *names):
    client = account.client()
    try:
        for name in names:
            client.create_folder(name)
    finally:
        client.logout()


def listed(account):
    with open_session(account) as session:
        return {folder.path: folder for folder in session.list_folders()}


def roles(folders):
    return {path: folder.role for path, folder in folders.items() if folder.role != FolderRole.OTHER}


def test_special_use_gives_the_roles_and_wins_over_names(imap_account):
    account = imap_account()
    create_folders(account, "Sent", "Drafts", "Trash", "Junk", "Archive", "Sent Items", "Spam", "Projects/2024")
    folders = listed(account)
    assert roles(folders) == {"INBOX": "inbox", "Sent": "sent", "Drafts": "drafts", "Trash": "trash",
                              "Junk": "junk", "Archive": "archive"}
    assert folders["Projects/2024"] == RemoteFolder(path="Projects/2024", name="2024", delimiter="/")
    # Dovecot lists the parent it made for Projects/2024 as \Noselect.
    assert folders["Projects"].selectable is False


def test_without_special_use_the_conventional_names_give_the_roles(imap_account, dovecot_plain):
    account = imap_account(dovecot_plain)
    create_folders(account, "Sent Items", "Deleted Items", "Trash", "Junk E-mail", "Spam", "Archives",
                   "Work/Sent", "Drafts", "Notes")
    folders = listed(account)
    assert roles(folders) == {"INBOX": "inbox", "Sent Items": "sent", "Trash": "trash", "Spam": "junk",
                              "Archives": "archive", "Drafts": "drafts"}
    assert folders["Work/Sent"].role == FolderRole.OTHER, "one folder per role, the shallower wins"


def test_names_in_modified_utf7_are_decoded_and_select_works(imap_account):
    account = imap_account()
    names = ["Entwürfe", "日本語", "Ünter/Ordner", "Tom & Jerry"]
    create_folders(account, *names)
    client = account.client()
    client.append("日本語", b"Subject: x\r\n\r\nx\r\n")
    client.logout()

    folders = listed(account)
    assert set(names) <= set(folders)
    assert folders["Ünter/Ordner"].name == "Ordner"
    with open_session(account) as session:
        assert session.select("日本語").exists == 1
        assert session.select("Tom & Jerry").exists == 0


def test_a_name_that_is_not_modified_utf7_is_listed_but_not_selectable():
    folders = folders_from_list([((b"\\HasNoChildren",), b"/", b"caf\xc3\xa9"), ((), b"/", b"INBOX")])
    assert [(f.path, f.selectable) for f in folders] == [("café", False), ("INBOX", True)]


def test_special_use_flags_are_case_insensitive_and_one_per_role():
    folders = folders_from_list([
        ((b"\\SENT",), b".", b"INBOX.Sent"),
        ((b"\\Sent",), b".", b"INBOX.Sent2"),
        ((b"\\All", b"\\HasNoChildren"), b".", b"All Mail"),
        ((b"\\Noselect",), b".", b"Trash"),
        ((), None, b"inbox"),
    ])
    assert [(f.path, f.role) for f in folders] == [
        ("INBOX.Sent", "sent"), ("INBOX.Sent2", "other"), ("All Mail", "all"), ("Trash", "other"),
        ("inbox", "inbox")]
    assert folders[-1].name == "inbox" and folders[-1].delimiter is None


def test_selecting_a_folder_that_is_gone(imap_account):
    account = imap_account()
    create_folders(account, "Doomed")
    with open_session(account) as session:
        session.select("Doomed")
        client = account.client()
        client.delete_folder("Doomed")
        client.logout()
        with pytest.raises(FolderNotFound) as caught:
            session.select("Doomed")
        assert caught.value.path == "Doomed" and "no longer exists" in str(caught.value)
        assert session.select("INBOX").exists == 0, "the session is still usable"
