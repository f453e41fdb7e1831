import datetime as dt
import email.utils
import html
import logging
import re

from odoo import api, fields, models, tools
from odoo.exceptions import AccessError, UserError, ValidationError

from ..application import outgoing_mime
from ..application.errors import MailboxError
from ..application.message_view import parse_message, part_bytes
from ..application.use_cases.read_message import MessageGone
from ..orm.read_context import open_index_message

_logger = logging.getLogger(__name__)

DEFAULT_UNDO_SECONDS = 5
_EDITABLE = ("draft", "failed")
_DRAFT_FIELDS = ("account_id", "subject", "body_html", "email_to", "email_cc", "email_bcc")
#: what only the sender (and maildesk_compose, from the source row) sets: never taken from a caller
_SENDER_FIELDS = ("state", "mime", "mime_size", "send_after", "attempts", "max_attempts", "next_attempt_at",
                  "last_attempt_at", "last_error", "failure_kind", "sent_at", "sent_remote_id", "sent_filed",
                  "handed_over", "own_copy_pending", "message_id", "in_reply_to", "references", "compose_mode",
                  "parent_index_id")
_PREFIX = {"reply": "Re: ", "reply_all": "Re: ", "forward": "Fwd: "}
_PREFIX_RE = {"reply": re.compile(r"^\s*(re|aw|sv)\s*:", re.I), "reply_all": re.compile(r"^\s*(re|aw|sv)\s*:", re.I),
              "forward": re.compile(r"^\s*(fwd?|tr)\s*:", re.I)}


class MaildeskOutbox(models.Model):
    """One message a user writes: a draft, then a durable row the sender cron sends once.

    The final MIME and the Message-ID are fixed before any transport is
    called (``maildesk_send``); the sender (``application/use_cases/
    send_outbox.py``) moves the row through queued → sending → sent or
    failed in SQL, committing ``sending`` before it talks to the server.
    """

    _name = "maildesk.outbox"
    _description = "Outgoing Message"
    _order = "id desc"
    _rec_name = "subject"

    account_id = fields.Many2one("mailbox.account", string="From Account", required=True, ondelete="cascade",
                                 index=True)
    user_id = fields.Many2one("res.users", required=True, default=lambda self: self.env.user, ondelete="cascade",
                              index=True, readonly=True)
    state = fields.Selection(
        [("draft", "Draft"), ("queued", "Queued"), ("sending", "Sending"), ("sent", "Sent"), ("failed", "Failed")],
        required=True, default="draft", readonly=True, index=True)
    message_id = fields.Char(string="Message-ID", readonly=True, copy=False)
    compose_mode = fields.Selection(
        [("new", "New"), ("reply", "Reply"), ("reply_all", "Reply All"), ("forward", "Forward")],
        default="new", required=True, readonly=True)
    parent_index_id = fields.Many2one("maildesk.message_index", string="Replying To", ondelete="set null",
                                      readonly=True)
    subject = fields.Char()
    body_html = fields.Html(sanitize_style=True)
    email_to = fields.Char(string="To")
    email_cc = fields.Char(string="Cc")
    email_bcc = fields.Char(string="Bcc")
    in_reply_to = fields.Char(string="In-Reply-To", readonly=True)
    references = fields.Text(readonly=True)
    attachment_ids = fields.Many2many("ir.attachment", "maildesk_outbox_attachment_rel", "outbox_id",
                                      "attachment_id", string="Attachments")
    mime = fields.Binary(attachment=False, readonly=True, copy=False,
                         help="The final message, built once when Send is pressed.")
    mime_size = fields.Integer(readonly=True, copy=False)
    send_after = fields.Datetime(readonly=True, copy=False, help="The end of the undo window.")
    attempts = fields.Integer(readonly=True, copy=False)
    max_attempts = fields.Integer(default=5)
    next_attempt_at = fields.Datetime(readonly=True, copy=False)
    last_attempt_at = fields.Datetime(readonly=True, copy=False,
                                      help="When the sender last handed the message to the server.")
    last_error = fields.Text(readonly=True, copy=False)
    failure_kind = fields.Selection(
        [("temporary", "Temporary"), ("permanent", "Permanent"), ("unknown", "Unknown")],
        readonly=True, copy=False)
    sent_at = fields.Datetime(readonly=True, copy=False)
    sent_remote_id = fields.Char(readonly=True, copy=False,
                                 help="The Gmail id, Graph id or IMAP UID of the copy in the Sent folder.")
    sent_filed = fields.Boolean(readonly=True, copy=False,
                                help="The Sent copy is filed and indexed (IMAP appends it after sending).")
    handed_over = fields.Boolean(readonly=True, copy=False,
                                 help="The last attempt may have handed the whole message to the server.")
    own_copy_pending = fields.Boolean(readonly=True, copy=False,
                                      help="The own copy (SMTP's proof) is still to be removed from INBOX.")

    _sql_constraints = [
        ("message_id_uniq", "unique(message_id)", "A Message-ID names one outgoing message."),
    ]

    def init(self):
        # The sender's claim: due rows of an account, oldest first.
        tools.create_index(self.env.cr, "maildesk_outbox_due_idx", self._table,
                           ["account_id", "state", "id"], where="state IN ('queued', 'sending')")

    # ------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        accounts = self.env["mailbox.account"]
        for vals in vals_list:
            if not self.env.su:
                if vals.get("user_id", self.env.uid) != self.env.uid:
                    raise AccessError(self.env._("An outgoing message belongs to the user who writes it."))
                # A caller writes a draft: what the sender owns (state, MIME, the undo window, the
                # thread headers...) is never taken from it, or a user could queue arbitrary bytes.
                for name in _SENDER_FIELDS:
                    vals.pop(name, None)
                vals["user_id"] = self.env.uid
                vals["state"] = "draft"
                self._maildesk_check_may_send(accounts.browse(vals.get("account_id")))
            account = accounts.browse(vals.get("account_id"))
            account.check_access("read")  # one may only write from a mailbox one may read
            vals["message_id"] = outgoing_mime.new_message_id(account.sudo().email)
            vals.setdefault("state", "draft")
        rows = super().create(vals_list)
        rows._maildesk_own_attachments()
        return rows

    def write(self, vals):
        if not self.env.su:
            if "user_id" in vals or "message_id" in vals:
                raise AccessError(self.env._("The author and Message-ID of an outgoing message never change."))
            taken = sorted(set(_SENDER_FIELDS) & set(vals))
            if taken:
                raise AccessError(self.env._("Only MailDesk sets these fields of an outgoing message: %s",
                                             ", ".join(taken)))
            if any(row.state not in _EDITABLE for row in self):
                raise UserError(self.env._("A message being sent cannot be edited. Undo the send first."))
            if vals.get("account_id"):
                self._maildesk_check_may_send(self.env["mailbox.account"].browse(vals["account_id"]))
        result = super().write(vals)
        if "attachment_ids" in vals:
            self._maildesk_own_attachments()
        return result

    @api.ondelete(at_uninstall=False)
    def _unlink_only_what_was_not_sent(self):
        if not self.env.su and any(row.state not in _EDITABLE for row in self):
            raise UserError(self.env._("Only drafts and failed messages can be discarded."))

    def _maildesk_own_attachments(self):
        """Attachments follow the row's access (ir.attachment checks res_model/res_id).

        An upload not yet tied to a record (the composer's) becomes the draft's. One that belongs
        to a record (a partner's contract, another draft's file) is never taken from it: the draft
        gets a copy, so discarding the draft deletes only the copy.
        """
        for row in self:
            loose = row.attachment_ids.filtered(lambda a, row=row: a.res_model != self._name or a.res_id != row.id)
            if not loose:
                continue
            loose.check_access("read")
            belongs = loose.sudo().filtered(lambda a: (a.res_model and a.res_id) or a.res_field)
            unbound = loose - belongs
            if unbound:
                unbound.sudo().write({"res_model": self._name, "res_id": row.id})
            if belongs:
                copies = [attachment.copy({"res_model": self._name, "res_id": row.id, "res_field": False})
                          for attachment in belongs]
                row.sudo().write({"attachment_ids": [*(fields.Command.unlink(a.id) for a in belongs),
                                                     *(fields.Command.link(c.id) for c in copies)]})

    # ------------------------------------------------------------------
    # RPC for the composer
    # ------------------------------------------------------------------

    @api.model
    def _maildesk_send_rights_domain(self):
        """Send rights are not read rights: the owner may send; the users a mailbox is shared with only
        when its ``shared_users_may_send`` is set; MailDesk administrators from any."""
        domain = [("active", "=", True)]
        if self.env.su or self.env.user.has_group("maildesk_mail_client.group_maildesk_admin"):
            return domain
        return [*domain, "|", ("user_id", "=", self.env.uid),
                "&", "&", ("is_shared", "=", True), ("shared_users_may_send", "=", True),
                ("access_user_ids", "in", self.env.uid)]

    @api.model
    def _maildesk_sendable_accounts(self):
        """The mailboxes the user may send from and that can send: an address, and SMTP for IMAP ones.
        The From list never offers one that would fail."""
        return self.env["mailbox.account"].search([
            *self._maildesk_send_rights_domain(),
            ("email", "!=", False), "|", ("provider", "!=", "imap"), ("smtp_host", "!=", False)])

    @api.model
    def _maildesk_check_may_send(self, account):
        if self.env.su:
            return
        if not account or not self.env["mailbox.account"].search_count(
                [*self._maildesk_send_rights_domain(), ("id", "=", account.id)]):
            raise AccessError(self.env._(
                "You may not send from this mailbox: it is archived, or it is shared with you for reading only "
                "(an administrator can allow its users to send from it)."))

    @api.model
    def maildesk_compose(self, mode="new", index_id=False, account_id=False):
        """A new draft row for the composer: empty, or a reply / reply-all / forward of an index row."""
        if mode not in _PREFIX and mode != "new":
            raise UserError(self.env._("Unknown compose mode %s.", mode))
        source = self.env["maildesk.message_index"]
        if mode != "new":
            if not index_id:
                raise UserError(self.env._("Choose the message to answer or forward."))
            source = source.browse(int(index_id)).exists()
            if not source:
                raise UserError(self.env._("That message is no longer in the index."))
            source.check_access("read")
        accounts = self._maildesk_sendable_accounts()
        account = accounts.browse(int(account_id)) if account_id else (source.account_id or accounts[:1])
        if account and account not in accounts:
            account = accounts[:1]  # the message's mailbox cannot send: answer from one that can
        if not account:
            raise UserError(self.env._("Connect a mailbox that can send first (an address, and SMTP settings "
                                       "for an IMAP mailbox): there is no account to send from."))
        account.check_access("read")
        vals = {"account_id": account.id}
        # Set from the source row only, never from a caller: see create().
        owned = {"compose_mode": mode, "parent_index_id": source.id or False}
        body = ""
        if source:
            answer = self._maildesk_answer_values(mode, source, account)
            for name in ("in_reply_to", "references"):
                if name in answer:
                    owned[name] = answer.pop(name)
            vals.update(answer)
            body = self._maildesk_quote(source, mode)
        signature = self.env["maildesk.signature"]._maildesk_for(account)
        vals["body_html"] = "<p><br></p>" + (f"<div class='maildesk_signature'>{signature}</div>" if signature
                                             else "") + body
        row = self.create(vals)
        row.sudo().write(owned)
        if mode == "forward" and source:
            row._maildesk_copy_attachments(source)
        return row._maildesk_draft_dict(accounts)

    @api.model
    def _maildesk_answer_values(self, mode, source, account):
        subject = source.subject or ""
        if not _PREFIX_RE[mode].match(subject):
            subject = _PREFIX[mode] + subject
        vals = {"subject": subject}
        if mode == "forward":
            return vals
        references = " ".join(part for part in ((source.references_header or "").split()
                                               + ([source.message_id] if source.message_id else [])) if part)
        vals.update(in_reply_to=source.message_id or False, references=references or False)
        own = {(account.email or "").lower(), (source.account_id.email or "").lower()} - {""}
        reply_to = self._maildesk_reply_to(source) or source.from_address or ""
        to = [entry for entry in outgoing_mime.addresses(reply_to) if entry[1].lower() not in own]
        cc = []
        if mode == "reply_all":
            taken = {address.lower() for _name, address in to} | own
            for field in (source.to_addresses, source.cc_addresses):
                for name, address in outgoing_mime.addresses(field or ""):
                    if address.lower() not in taken:
                        taken.add(address.lower())
                        cc.append((name, address))
        if not to and mode == "reply_all" and cc:
            to, cc = cc[:1], cc[1:]
        vals["email_to"] = _join(to)
        vals["email_cc"] = _join(cc)
        return vals

    @api.model
    def _maildesk_reply_to(self, source):
        """Reply-To of the original, when its body can be read (the index keeps no Reply-To)."""
        try:
            opened = open_index_message(source, with_raw=True, rendered=False)
        except (MailboxError, MessageGone):
            return ""
        raw = opened.body.raw if opened else None
        if not raw:
            return ""
        match = re.search(rb"^Reply-To:[ \t]*(.*(?:\r?\n[ \t].*)*)", raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0],
                          re.I | re.M)
        if not match:
            return ""
        from email.header import decode_header, make_header

        try:
            return str(make_header(decode_header(match[1].decode("utf-8", "replace").strip())))
        except (ValueError, LookupError):
            return ""

    @api.model
    def _maildesk_quote(self, source, mode):
        try:
            opened = open_index_message(source)
        except (MailboxError, MessageGone) as error:
            _logger.info("Quoting index row %s: its body could not be read (%s).", source.id, error)
            opened = None
        body = opened.body if opened else None
        inner = (body.html or body.text_html or "") if body else html.escape(source.snippet or "")
        when = fields.Datetime.to_string(source.date) if source.date else ""
        sender = html.escape(source.from_address or "")
        if mode == "forward":
            intro = (f"<p>---------- Forwarded message ----------<br>From: {sender}<br>Date: {html.escape(when)}<br>"
                     f"Subject: {html.escape(source.subject or '')}<br>"
                     f"To: {html.escape(source.to_addresses or '')}</p>")
            return f"<br><div class='maildesk_forward'>{intro}{inner}</div>"
        return (f"<br><div class='maildesk_quote'><p>On {html.escape(when)}, {sender} wrote:</p>"
                f"<blockquote style='margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex'>{inner}"
                "</blockquote></div>")

    def _maildesk_copy_attachments(self, source):
        self.ensure_one()
        try:
            opened = open_index_message(source, with_raw=True)
        except (MailboxError, MessageGone) as error:
            _logger.info("Forwarding index row %s: attachments not read (%s).", source.id, error)
            return
        raw = opened.body.raw if opened else None
        if not raw:
            return
        view = parse_message(raw)
        values = []
        for part in view.attachments:
            try:
                content_type, filename, data = part_bytes(raw, part.part_id)
            except LookupError:
                continue
            values.append({"name": filename or part.filename or "attachment", "raw": data, "mimetype": content_type,
                           "res_model": self._name, "res_id": self.id})
        if values:
            self.attachment_ids = [fields.Command.link(a.id) for a in self.env["ir.attachment"].create(values)]

    def _maildesk_draft_dict(self, accounts=None):
        self.ensure_one()
        accounts = accounts if accounts is not None else self._maildesk_sendable_accounts()
        return {
            "id": self.id, "account_id": self.account_id.id,
            "accounts": [{"id": a.id, "name": a.name, "email": a.email or ""} for a in accounts],
            "subject": self.subject or "", "body_html": self.body_html or "", "email_to": self.email_to or "",
            "email_cc": self.email_cc or "", "email_bcc": self.email_bcc or "",
            "attachments": [{"id": a.id, "name": a.name, "size": a.file_size, "mimetype": a.mimetype}
                            for a in self.attachment_ids],
            "message_id": self.message_id, "state": self.state, "compose_mode": self.compose_mode,
            "last_error": self.last_error or "", "failure_kind": self.failure_kind or False,
        }

    @api.model
    def maildesk_open_draft(self, outbox_id):
        return self.browse(int(outbox_id))._maildesk_draft_dict()

    @api.model
    def maildesk_save_draft(self, outbox_id, values):
        row = self.browse(int(outbox_id))
        vals = {key: values[key] or False for key in _DRAFT_FIELDS if key in values}
        if "attachment_ids" in values:
            ids = [int(i) for i in values["attachment_ids"] or []]
            vals["attachment_ids"] = [fields.Command.set(ids)]
        if vals:
            row.write(vals)
        if row.state == "failed" and vals:
            # A failed row edited is a draft again: its MIME is rebuilt at the next Send.
            row.sudo().write({"state": "draft", "failure_kind": False, "last_error": False, "mime": False})
        return {"id": row.id, "write_date": fields.Datetime.to_string(row.write_date)}

    @api.model
    def maildesk_drafts(self):
        rows = self.search([("user_id", "=", self.env.uid), ("state", "in", ("draft", "failed", "queued", "sending"))])
        return [{"id": r.id, "subject": r.subject or "", "email_to": r.email_to or "",
                 "write_date": fields.Datetime.to_string(r.write_date), "state": r.state,
                 "last_error": r.last_error or "", "account_id": r.account_id.id} for r in rows]

    @api.model
    def maildesk_send(self, outbox_id):
        row = self.browse(int(outbox_id))
        row.check_access("write")
        if row.state not in _EDITABLE:
            raise UserError(self.env._("This message is already being sent."))
        self._maildesk_check_may_send(row.account_id)
        row._maildesk_check_sendable()
        mime = row._maildesk_build_mime()
        now = fields.Datetime.now()
        send_after = now + dt.timedelta(seconds=self._maildesk_undo_seconds())
        row.sudo().write({"mime": mime, "mime_size": len(mime), "state": "queued", "send_after": send_after,
                          "next_attempt_at": False, "attempts": 0, "last_error": False, "failure_kind": False})
        self.env.ref("maildesk_mail_client.ir_cron_maildesk_send_outbox").sudo()._trigger(send_after)
        return {"id": row.id, "state": "queued", "send_after": fields.Datetime.to_string(send_after)}

    @api.model
    def _maildesk_undo_seconds(self):
        value = self.env["ir.config_parameter"].sudo().get_param("maildesk.undo_send_seconds", DEFAULT_UNDO_SECONDS)
        try:
            return max(0, int(value))
        except (TypeError, ValueError):
            return DEFAULT_UNDO_SECONDS

    def _maildesk_check_sendable(self):
        self.ensure_one()
        everyone = ", ".join(filter(None, (self.email_to, self.email_cc, self.email_bcc)))
        if not outgoing_mime.addresses(everyone):
            raise ValidationError(self.env._("Add at least one recipient."))
        bad = [entry for field in (self.email_to, self.email_cc, self.email_bcc)
               for entry in outgoing_mime.invalid_addresses(field or "")]
        if bad:
            raise ValidationError(self.env._("These recipients are not valid addresses: %s", ", ".join(bad)))
        if re.search(r"[\r\n]", self.subject or ""):
            raise UserError(self.env._("The subject cannot contain line breaks: write it on one line."))
        if not self.account_id.email:
            raise ValidationError(self.env._("The account %s has no email address to send from.",
                                             self.account_id.display_name))

    def _maildesk_build_mime(self):
        self.ensure_one()
        attachments = [outgoing_mime.Attachment(a.name, a.mimetype or "application/octet-stream", a.raw or b"")
                       for a in self.attachment_ids.sudo()]
        body = self.body_html or ""
        outgoing = outgoing_mime.Outgoing(
            from_name=self.account_id.name if self.account_id.name != self.account_id.email else "",
            from_email=self.account_id.email, message_id=self.message_id, subject=self.subject or "",
            to=self.email_to or "", cc=self.email_cc or "", bcc=self.email_bcc or "",
            html=body if tools.html2plaintext(body).strip() or "<img" in body else "",
            text=tools.html2plaintext(body), in_reply_to=self.in_reply_to or "", references=self.references or "",
            attachments=attachments)
        return outgoing_mime.build(outgoing)

    @api.model
    def maildesk_undo_send(self, outbox_id):
        row = self.browse(int(outbox_id))
        row.check_access("write")
        self.env.flush_all()
        # One statement: the sender claims with SKIP LOCKED, so either it took the row
        # (state is no longer queued here) or this wins and the sender never sees it.
        self.env.cr.execute(
            "UPDATE maildesk_outbox SET state = 'draft', mime = NULL, send_after = NULL, write_date = %s "
            "WHERE id = %s AND state = 'queued' RETURNING id", [fields.Datetime.now(), row.id])
        undone = bool(self.env.cr.fetchone())
        self.invalidate_model()
        return undone

    @api.model
    def maildesk_outbox_status(self, ids):
        rows = self.search([("id", "in", [int(i) for i in ids or []])])  # the record rules filter
        now = fields.Datetime.now()
        if any(row.state == "queued" and (not row.send_after or row.send_after <= now) for row in rows):
            # The undo window is over: wake the sender now. A trigger for a later time only
            # fires at the cron thread's next poll (up to a minute); this one is a NOTIFY.
            # Once: the composer polls every second until the sender has claimed the row.
            cron = self.env.ref("maildesk_mail_client.ir_cron_maildesk_send_outbox").sudo()
            if not self.env["ir.cron.trigger"].sudo().search_count(
                    [("cron_id", "=", cron.id), ("call_at", "<=", now)], limit=1):
                cron._trigger()
        return [{"id": r.id, "state": r.state, "last_error": r.last_error or "",
                 "failure_kind": r.failure_kind or False, "sent_at": fields.Datetime.to_string(r.sent_at)
                 if r.sent_at else False} for r in rows]

    def action_retry(self):
        self.check_access("write")
        for row in self:
            if row.state != "failed":
                raise UserError(self.env._("Only a failed message can be retried."))
            self._maildesk_check_may_send(row.account_id)
        now = fields.Datetime.now()
        for row in self:
            vals = {"state": "queued", "send_after": now, "next_attempt_at": False, "attempts": 0,
                    "failure_kind": False, "last_error": False}
            if not row.mime:
                mime = row._maildesk_build_mime()
                vals.update(mime=mime, mime_size=len(mime))
            row.sudo().write(vals)
        self.env.ref("maildesk_mail_client.ir_cron_maildesk_send_outbox").sudo()._trigger()
        return True

    def action_discard(self):
        self.check_access("unlink")
        self.unlink()
        return True

    @api.model
    def maildesk_retry(self, outbox_id):
        return self.browse(int(outbox_id)).action_retry()

    @api.model
    def maildesk_discard(self, outbox_id):
        return self.browse(int(outbox_id)).action_discard()

    @api.model
    def maildesk_recipients(self, term, limit=8):
        term = (term or "").strip()
        limit = max(1, min(int(limit or 8), 50))
        found, seen = [], set()

        def add(name, address):
            normalized = (address or "").strip().lower()
            if normalized and "@" in normalized and normalized not in seen:
                seen.add(normalized)
                found.append({"name": name or "", "email": address.strip()})

        if not term:
            return []
        for partner in self.env["res.partner"].search_read(
                ["|", ("name", "ilike", term), ("email", "ilike", term), ("email", "!=", False)],
                ["name", "email"], limit=limit):
            for name, address in outgoing_mime.addresses(partner["email"]) or [("", partner["email"])]:
                add(partner["name"] or name, address)
        if len(found) < limit:
            # Every mailbox the user may read: the record rules bound it, not a limit.
            accounts = self.env["mailbox.account"].search([]).ids  # pylint: disable=no-search-all
            if accounts:
                self.env.cr.execute(
                    """
                    SELECT from_address, to_addresses FROM maildesk_message_index
                     WHERE account_id = ANY(%s) AND NOT deleted_on_server
                       AND (from_address ILIKE %s OR to_addresses ILIKE %s)
                     ORDER BY date DESC NULLS LAST LIMIT 200
                    """, [accounts, f"%{term}%", f"%{term}%"])
                needle = term.lower()
                for from_address, to_addresses in self.env.cr.fetchall():
                    for name, address in outgoing_mime.addresses(
                            ", ".join(filter(None, (from_address, to_addresses)))):
                        if needle in address.lower() or needle in (name or "").lower():
                            add(name, address)
                        if len(found) >= limit:
                            break
                    if len(found) >= limit:
                        break
        return found[:limit]

    # ------------------------------------------------------------------
    # The sender cron
    # ------------------------------------------------------------------

    @api.model
    def _cron_maildesk_send_outbox(self):
        from ..orm.outbox_context import run_sender

        run_sender(self.env)


def _join(pairs):
    return ", ".join(email.utils.formataddr((name, address)) for name, address in pairs) or False
