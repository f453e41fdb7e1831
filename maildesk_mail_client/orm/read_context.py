"""The read flow's ports on an Odoo environment (DESIGN §3 "Read").

The cache is looked up on the request's cursor. A miss is filled in a
cursor of its own (``registry.cursor()``), whose transaction holds the
message's advisory lock and commits the row as it releases it; under the
test runner, where nothing may commit, a savepoint on the test cursor
stands in (as for leases, see engine_context.lease_transaction).

Callers check access first, as the user: these functions read and write
the cache in SQL, whoever asks.
"""

import contextlib
import urllib.parse

from ..application.use_cases.read_message import ReadPorts, ReadSettings, open_message
from ..repositories.ui_cache import UiCacheRepository
from .engine_context import OdooClock, _testing, mailbox_factory, settings_from_params

DEFAULT_TTL_HOURS = 72
DEFAULT_MAX_BYTES = 25 * 1024 * 1024
#: maildesk.cache_max_total_bytes: the raw messages the whole cache keeps (the daily cleanup evicts the oldest)
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024


def _number(env, name, default, kind):
    try:
        value = kind(env["ir.config_parameter"].sudo().get_param(name, default))
    except (TypeError, ValueError):
        return default
    return value if value > 0 else default


def read_settings(env):
    return ReadSettings(ttl_hours=_number(env, "maildesk.cache_ttl_hours", DEFAULT_TTL_HOURS, float),
                        max_bytes=_number(env, "maildesk.cache_max_bytes", DEFAULT_MAX_BYTES, int))


def max_total_bytes(env):
    return _number(env, "maildesk.cache_max_total_bytes", DEFAULT_MAX_TOTAL_BYTES, int)


def fill_transaction(env):
    @contextlib.contextmanager
    def transaction():
        if _testing() or env.registry.in_test_mode():
            with env.cr.savepoint():
                yield UiCacheRepository(env.cr)
        else:
            with env.registry.cursor() as cr:
                yield UiCacheRepository(cr)

    return transaction


def read_ports(env, mailboxes=None):
    """``mailboxes`` replaces the provider connector (tests)."""
    return ReadPorts(
        cache=UiCacheRepository(env.cr),
        fill=fill_transaction(env),
        mailboxes=mailboxes or mailbox_factory(env, settings_from_params(env)),
        clock=OdooClock(),
        settings=read_settings(env),
    )


def cid_url(index_id, part_id=None):
    """Where an inline image of message ``index_id`` (or of its nested message ``part_id``) is served."""
    suffix = f"?part={urllib.parse.quote(part_id)}" if part_id else ""
    return lambda content_id: (f"/maildesk/message/{int(index_id)}/cid/"
                               f"{urllib.parse.quote(content_id, safe='@')}{suffix}")


def open_index_message(message, with_raw=False, mailboxes=None, rendered=True):
    """Open ``message`` (a ``maildesk.message_index`` record the caller checked access to).

    Returns an OpenedMessage; raises read_message.MessageGone or the provider's MailboxError.
    """
    message.ensure_one()
    env = message.env
    env.flush_all()
    location = UiCacheRepository(env.cr).locate(message.id)
    if location is None:
        return None
    return open_message(read_ports(env, mailboxes), location, cid_url(message.id), with_raw=with_raw,
                        rendered=rendered)
