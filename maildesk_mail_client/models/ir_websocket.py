from odoo import models


class IrWebsocket(models.AbstractModel):
    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        """Subscribe MailDesk users to the channel of each account they may read.

        The search runs with the user's own record rules, so the channel list
        is exactly the accounts the user owns or is named on; a user who is
        not named on a shared mailbox never receives its notifications.
        """
        channels = list(channels)
        if self.env.uid and self.env.user.has_group("maildesk_mail_client.group_maildesk_user"):
            channels.extend(self.env["mailbox.account"].search([]))
        return super()._build_bus_channel_list(channels)
