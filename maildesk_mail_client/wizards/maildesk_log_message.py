import email
import email.policy
import email.utils

from markupsafe import Markup
from odoo import api, fields, models
from odoo.exceptions import UserError

from ..application.errors import MailboxError
from ..application.use_cases.read_message import MessageGone
from ..orm.read_context import open_index_message


class MaildeskLogMessage(models.TransientModel):
    """"Log in chatter": put one message of the inbox, with its attachments, in a record's chatter.

    By hand, for what the alias scan does not catch: the user picks a partner or any
    document of a ``mail.thread`` model. The message is posted as the user (their access
    to the record decides), as a note by its original sender, with its Message-ID: the
    importer then knows it is in Odoo already and never imports it a second time.
    """

    _name = "maildesk.log_message"
    _description = "Log a message in a record's chatter"

    index_id = fields.Many2one("maildesk.message_index", string="Message", required=True, readonly=True)
    subject = fields.Char(related="index_id.subject")
    from_address = fields.Char(related="index_id.from_address", string="From")
    record_ref = fields.Reference(selection="_selection_record_models", string="Log in", required=True)

    @api.model
    def _selection_record_models(self):
        models_ = self.env["ir.model"].sudo().search([("is_mail_thread", "=", True), ("transient", "=", False)])
        # Partners first: the usual target.
        return sorted(((m.model, m.name) for m in models_), key=lambda pair: (pair[0] != "res.partner", pair[1]))

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        index_id = values.get("index_id") or self.env.context.get("default_index_id")
        if index_id and "record_ref" in fields_list and not values.get("record_ref"):
            message = self.env["maildesk.message_index"].browse(index_id).exists()
            sender = message and email.utils.parseaddr(message.from_address or "")[1]
            partner = sender and self.env["res.partner"].search([("email_normalized", "=", sender.lower())], limit=1)
            if partner:
                values["record_ref"] = f"res.partner,{partner.id}"
        return values

    def action_log(self):
        self.ensure_one()
        message = self.index_id
        message.check_access("read")
        record = self.record_ref
        if not record or not record.exists():
            raise UserError(self.env._("Choose the record whose chatter gets the message."))
        if not hasattr(record, "message_post"):
            raise UserError(self.env._("%s has no chatter.", record.display_name))
        record.check_access("read")
        try:
            opened = open_index_message(message, with_raw=True, rendered=False)
        except MessageGone as error:
            raise UserError(str(error)) from error
        except MailboxError as error:
            raise UserError(self.env._("The message could not be fetched from its server: %s", error)) from error
        if opened is None or opened.body.raw is None:
            raise UserError(self.env._("The message is no longer in its mailbox."))
        parsed = self.env["mail.thread"].message_parse(
            email.message_from_bytes(opened.body.raw, policy=email.policy.SMTP))
        message_id = parsed.get("message_id")
        if message_id and self.env["mail.message"].sudo().search_count(
                [("message_id", "=", message_id), ("model", "=", record._name), ("res_id", "=", record.id)]):
            raise UserError(self.env._("This message is already in the chatter of %s.", record.display_name))
        author = record._mail_find_partner_from_emails([parsed.get("email_from")], records=record)
        posted = record.message_post(
            # The gateway's parse of a message; mail.message's Html field sanitizes it on create.
            body=Markup(parsed.get("body") or ""),
            subject=parsed.get("subject"),
            message_type="email",
            subtype_xmlid="mail.mt_note",
            email_from=parsed.get("email_from"),
            author_id=author[0].id if author and author[0] else False,
            attachments=[(att.fname, att.content, att.info) for att in parsed.get("attachments", [])],
            message_id=message_id,
            date=parsed.get("date"),
        )
        return {
            "type": "ir.actions.act_window", "res_model": record._name, "res_id": record.id,
            "views": [(False, "form")], "target": "current",
            "context": {"maildesk_logged_message_id": posted.id},
        }
