from odoo import models


class IrWebsocket(models.AbstractModel):
    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        channels = list(channels)
        channels.extend(self._maildesk_account_channels())
        return super()._build_bus_channel_list(channels)

    def _maildesk_account_channels(self):
        """The accounts whose index notifications this user receives.

        The search runs with the user's own record rules, so the list is
        exactly the accounts they own or are named on; a user who is not
        named on a shared mailbox never receives its notifications.
        """
        if not (self.env.uid and self.env.user.has_group("maildesk_mail_client.group_maildesk_user")):
            return self.env["mailbox.account"]
        return self.env["mailbox.account"].search([("active", "=", True)])
