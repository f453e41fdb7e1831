"""The ingest flow's ports on an Odoo environment (DESIGN §3 flow 4, use_cases/ingest.py)."""

import dataclasses

from ..application.use_cases.ingest import AliasBook, IngestPorts, IngestSettings
from ..repositories.ingest_queue import IngestQueueRepository
from .engine_context import OdooCheckpoint, OdooClock, mailbox_factory, settings_from_params


def alias_book(env):
    """Odoo's aliases as ``mail.thread.message_route`` matches them: the full address, or the
    local part alone for aliases with "local-part based incoming detection"."""

    def load():
        aliases = env["mail.alias"].sudo().search_read([("alias_name", "!=", False)],
                                                        ["alias_full_name", "alias_name", "alias_incoming_local"])
        allowed = env["ir.config_parameter"].sudo().get_param("mail.catchall.domain.allowed") or ""
        allowed = {domain.strip().lower() for domain in allowed.split(",") if domain.strip()}
        if allowed:
            allowed |= {name.lower() for name in env["mail.alias.domain"].sudo().search([]).mapped("name")}
        return AliasBook(
            full_names=frozenset(a["alias_full_name"].lower() for a in aliases
                                 if a["alias_full_name"] and "@" in a["alias_full_name"]),
            local_names=frozenset(a["alias_name"].lower() for a in aliases if a["alias_incoming_local"]),
            allowed_domains=frozenset(allowed) if allowed else None,
        )

    return load


class OdooImporter:
    """Odoo's mail gateway: ``mail.thread.message_process`` routes by alias, or as a reply."""

    def __init__(self, env):
        self.env = env

    def process(self, raw, message_id):
        self.env["mail.thread"].message_process(None, raw)
        message = self.env["mail.message"].sudo().search([("message_id", "=", message_id)], limit=1, order="id")
        return message.id or None


def ingest_settings(env):
    params = env["ir.config_parameter"].sudo()
    defaults = IngestSettings()
    values = {}
    for name in ("scan_batch", "claim_batch", "lease_seconds", "backoff_base", "backoff_cap"):
        try:
            values[name] = int(params.get_param(f"maildesk.ingest_{name}", getattr(defaults, name)))
        except (TypeError, ValueError):
            continue
    return dataclasses.replace(defaults, **values)


def ingest_ports(env, mailboxes=None, importer=None):
    """``mailboxes`` and ``importer`` replace the provider connector and the gateway (tests)."""
    return IngestPorts(
        # The scan's wait looks only at other transactions writing the index: under the test runner
        # there are none, and under the cron runner its own ir_cron row lock is not one of them.
        queue=IngestQueueRepository(env.cr),
        aliases=alias_book(env),
        mailboxes=mailboxes or mailbox_factory(env, settings_from_params(env)),
        importer=importer or OdooImporter(env),
        checkpoint=OdooCheckpoint(env),
        clock=OdooClock(),
        settings=ingest_settings(env),
    )
