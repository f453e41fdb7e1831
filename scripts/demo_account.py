"""Connect the demo mailbox in Odoo: run inside ``odoo-bin shell``, which provides ``env``.

    MAILDESK_DEMO_IMAP_HOST=127.0.0.1 MAILDESK_DEMO_IMAP_PORT=1143 odoo-bin shell -d maildesk < scripts/demo_account.py

``scripts/run`` and ``docker-compose.yml`` run it once Odoo serves. It is
idempotent: it creates the "Demo mailbox" account (IMAP, login demo / demo,
owned by admin, sending through the demo SMTP sink) the first time, points it at
the servers given if they moved, creates the alias jobs@acme.example (mail to it
becomes a contact),
makes the inbox admin's home page, and asks for a sync now, as Sync now does: the running server's cron workers
wake on that at once instead of at their next poll, up to a minute later
(hence "once Odoo serves": a wake-up sent before they listen is lost).
"""

import os

NAME = "Demo mailbox"


def ensure_jobs_alias(env):
    """jobs@acme.example → a new contact, with the mail in its chatter (the ingest crons' demo)."""
    domain = env["mail.alias.domain"].sudo().search([("name", "=", "acme.example")], limit=1)
    if not domain:
        domain = env["mail.alias.domain"].sudo().create({"name": "acme.example"})
    aliases = env["mail.alias"].sudo()
    if not aliases.search([("alias_name", "=", "jobs"), ("alias_domain_id", "=", domain.id)], limit=1):
        aliases.create({"alias_name": "jobs", "alias_domain_id": domain.id, "alias_contact": "everyone",
                        "alias_model_id": env["ir.model"]._get_id("res.partner")})


def ensure_demo_account(env, host, port, smtp_port):
    admin = env.ref("base.user_admin")
    ensure_jobs_alias(env)
    # As admin, so the chatter says who connected it; archived counts, so an
    # archived demo account stays archived instead of getting a twin.
    accounts = env["mailbox.account"].with_user(admin).sudo().with_context(active_test=False)
    wanted = {
        "provider": "imap", "imap_host": host, "imap_port": port, "imap_security": "none",
        "imap_login": "demo", "imap_password": "demo",
        # The demo SMTP sink (scripts/demo_server.py): plain text on loopback, the IMAP login (demo / demo).
        "smtp_host": host, "smtp_port": smtp_port, "smtp_security": "none",
    }
    account = accounts.search([("name", "=", NAME)], limit=1)
    if account:
        changed = {field: value for field, value in wanted.items() if account[field] != value}
        if changed:
            account.write(changed)
    else:
        account = accounts.create({
            "name": NAME, "email": "demo@acme.example", "user_id": admin.id, **wanted,
        })
    account.action_sync_now()
    # The demo lands in the inbox: admin's home action, as a user would set it in Preferences.
    admin.action_id = env.ref("maildesk_mail_client.action_maildesk_inbox").id
    env.cr.commit()
    return account


if __name__ == "__main__":
    demo = ensure_demo_account(env, os.environ["MAILDESK_DEMO_IMAP_HOST"],  # noqa: F821 (odoo-bin shell's env)
                               int(os.environ["MAILDESK_DEMO_IMAP_PORT"]), int(os.environ["MAILDESK_DEMO_SMTP_PORT"]))
    print(f"MAILDESK_DEMO_ACCOUNT id={demo.id} {demo.imap_host}:{demo.imap_port}")
