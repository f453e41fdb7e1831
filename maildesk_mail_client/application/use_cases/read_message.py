"""DESIGN §3 "Read": open a message from the body cache, or from its server once.

``open_message`` reads the cache on the caller's transaction; on a miss it
opens a short transaction of its own (``ports.fill``), takes the message's
advisory lock, looks again (another opener may have filled it meanwhile),
and only then asks the provider (``Mailbox.fetch_raw``, which never marks
the message read: IMAP ``BODY.PEEK[]``). The body is parsed and sanitized
once, stored with its expiry (``ttl_hours``) and committed with the lock's
release, so ten people opening one new message reach the server once.

A message bigger than ``max_bytes`` is never stored: it is fetched on each
open. When the index already knows its size is over the cap, no lock is
taken either (waiting would not save a fetch).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from ..domain import FolderState
from ..errors import MailboxError
from ..html_safety import safe_html, text_to_html
from ..message_view import MessageView, parse_message
from ..ports import Clock, MailboxFactory


class MessageGone(MailboxError):
    """The server no longer has the message (expunged or moved since the index saw it)."""

    transient = False


@dataclasses.dataclass(frozen=True)
class CachedBody:
    """A message as the reading pane shows it; ``raw`` only when it was asked for."""

    headers: dict  # subject, from, to, cc, date (ISO, UTC)
    html: str | None  # sanitized, remote content removed
    html_remote: str | None  # sanitized, remote images kept; None: the same as ``html``
    remote_blocked: int
    text: str | None
    text_html: str | None  # the text as safe HTML: links, folded quotes
    attachments: list | None  # Part.as_dict() + "referenced" (an inline image the HTML shows); None: not read
    raw_size: int
    fetched_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    raw: bytes | None = None


@dataclasses.dataclass(frozen=True)
class MessageLocation:
    """Where a message is on its server, as the index knows it."""

    index_id: int
    account_id: int
    folder: FolderState
    remote_id: str
    size: int | None = None
    deleted_on_server: bool = False
    message_id: str | None = None  # as indexed: the fetched message must carry the same


class BodyCache(Protocol):
    """repositories/ui_cache.py::UiCacheRepository."""

    def begin_fill(self) -> None: ...

    def lock(self, index_id: int) -> None: ...

    def get(self, index_id: int, now: dt.datetime, with_raw: bool = False): ...

    def store(self, index_id: int, body, raw: bytes, fetched_at: dt.datetime, expires_at: dt.datetime) -> None: ...


@dataclasses.dataclass(frozen=True)
class ReadSettings:
    ttl_hours: float = 72  # system parameter maildesk.cache_ttl_hours
    max_bytes: int = 25 * 1024 * 1024  # maildesk.cache_max_bytes: a bigger message is fetched on each open


@dataclasses.dataclass
class ReadPorts:
    cache: BodyCache  # on the caller's transaction: the fast path
    fill: Callable[[], AbstractContextManager[BodyCache]]  # a transaction of its own, committed on exit
    mailboxes: MailboxFactory
    clock: Clock
    settings: ReadSettings = ReadSettings()


@dataclasses.dataclass(frozen=True)
class OpenedMessage:
    body: CachedBody
    fetched: bool  # this call asked the server
    cached: bool  # the body is (now) in the cache


def render(raw: bytes, cid_url: Callable[[str], str]) -> CachedBody:
    """Parse and sanitize a message once, for the cache: both HTML versions, the text, the parts."""
    return render_view(parse_message(raw), cid_url, len(raw))


def render_view(view: MessageView, cid_url: Callable[[str], str], raw_size: int = 0) -> CachedBody:
    """A parsed message (or a message nested in one) as the reading pane shows it."""
    referenced = set()

    def own_part(content_id):
        part = view.by_content_id(content_id)
        if part is None:
            return None
        referenced.add(part.content_id)
        return cid_url(part.content_id)

    html, blocked = safe_html(view.html, own_part, allow_remote=False) if view.html else (None, 0)
    html_remote = safe_html(view.html, own_part, allow_remote=True)[0] if blocked else None
    attachments = [dict(part.as_dict(), referenced=part.content_id in referenced and part.content_id is not None)
                   for part in view.attachments]
    return CachedBody(headers=view.headers(), html=html, html_remote=html_remote, remote_blocked=blocked,
                      text=view.text, text_html=text_to_html(view.text) if view.text else None,
                      attachments=attachments, raw_size=raw_size)


def _fetch(ports: ReadPorts, location: MessageLocation) -> bytes:
    mailbox = ports.mailboxes(location.account_id)
    try:
        raw = mailbox.fetch_raw(location.folder, location.remote_id)
    finally:
        mailbox.close()
    if raw is None:
        raise MessageGone("The message is no longer on the server; it was moved or deleted.")
    raw = bytes(raw)
    if not _same_message(location.message_id, raw):
        # The folder was reset on the server (a new UIDVALIDITY) since it was indexed: this
        # id now names another message. Shown or cached, it would be the wrong one.
        raise MessageGone("The message changed on the server since it was indexed; it will be "
                          "indexed again at the next sync.")
    return raw


_PLAIN_ID = re.compile(r"<[^<>\s]{1,400}>")


def _same_message(indexed: str | None, raw: bytes) -> bool:
    """False only on proof of another message: both Message-IDs plain, and different."""
    if not indexed or not _PLAIN_ID.fullmatch(indexed.strip()):
        return True
    match = re.search(rb"^message-id:[ \t]*(<[^<>\s]{1,400}>)[ \t]*\r?$", raw.split(b"\r\n\r\n", 1)[0]
                      .split(b"\n\n", 1)[0], re.IGNORECASE | re.MULTILINE)
    if match is None:
        return True
    return match[1].decode("latin-1").lower() == indexed.strip().lower()


def _raw_only(raw: bytes) -> CachedBody:
    """A message not parsed (``attachments`` None: not read): what serving one of its parts needs."""
    return CachedBody(headers={}, html=None, html_remote=None, remote_blocked=0, text=None, text_html=None,
                      attachments=None, raw_size=len(raw), raw=raw)


def _load(ports: ReadPorts, location: MessageLocation, cid_url, with_raw: bool,
          rendered: bool = True) -> OpenedMessage:
    settings = ports.settings
    cached = ports.cache.get(location.index_id, ports.clock.now(), with_raw=with_raw)
    if cached is not None:
        return OpenedMessage(cached, fetched=False, cached=True)
    if location.size and location.size > settings.max_bytes:
        raw = _fetch(ports, location)
        if not rendered and with_raw:
            return OpenedMessage(_raw_only(raw), fetched=True, cached=False)
        return OpenedMessage(dataclasses.replace(render(raw, cid_url), raw=raw), fetched=True, cached=False)
    with ports.fill() as cache:
        cache.begin_fill()
        cache.lock(location.index_id)
        cached = cache.get(location.index_id, ports.clock.now(), with_raw=with_raw)
        if cached is not None:
            return OpenedMessage(cached, fetched=False, cached=True)
        raw = _fetch(ports, location)
        body = render(raw, cid_url)
        keep = len(raw) <= settings.max_bytes
        if keep:
            now = ports.clock.now()
            expires = now + dt.timedelta(hours=settings.ttl_hours)
            body = dataclasses.replace(body, fetched_at=now, expires_at=expires)
            cache.store(location.index_id, body, raw, now, expires)
    # the fill's transaction is committed: the lock is released with the row in place
    return OpenedMessage(dataclasses.replace(body, raw=raw if with_raw else None), fetched=True, cached=keep)


def open_message(ports: ReadPorts, location: MessageLocation, cid_url: Callable[[str], str],
                 with_raw: bool = False, rendered: bool = True) -> OpenedMessage:
    """The message at ``location`` as the reading pane shows it.

    ``cid_url(content_id)`` is the URL an inline image of this message is
    served at. ``with_raw`` also returns the raw bytes (to serve a part).
    ``rendered=False`` (with ``with_raw``): a message too big for the cache is
    not parsed only to be thrown away; its body then has ``attachments`` None.
    Raises MessageGone, or the provider's MailboxError.
    """
    return _load(ports, location, cid_url, with_raw, rendered)
