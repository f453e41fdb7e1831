"""Index notifications reach, over a real websocket, exactly the users who may read the account."""

import json

from odoo.addons.bus.tests.common import WebsocketCase
from odoo.tests import tagged

from .common import MaildeskFixtures


@tagged("post_install", "-at_install")
class TestBusChannels(MaildeskFixtures, WebsocketCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_maildesk()

    def _listen_as(self, user):
        # authenticate() deletes the previous test session; keep each listener's alive.
        self.session = None
        session = self.authenticate(user.login, user.login)
        socket = self.websocket_connect(cookie=f"session_id={session.sid}")
        self.subscribe(socket, [], self.env["bus.bus"]._bus_last_id())
        return socket

    def _received(self, socket):
        """Notifications waiting on ``socket``; [] if none arrives within the timeout."""
        import websocket

        socket.settimeout(1)
        try:
            _opcode, data = socket.recv_data()
        except websocket.WebSocketTimeoutException:
            return []
        return json.loads(data)

    def test_shared_account_notifies_its_users_only(self):
        alice, bob = self._listen_as(self.alice), self._listen_as(self.bob)
        self.account_shared._maildesk_notify_index_changed({"account_id": self.account_shared.id, "new": 3})
        self.trigger_notification_dispatching([self.account_shared])

        received = self._received(alice)
        self.assertEqual([n["message"]["type"] for n in received], ["maildesk/index_changed"])
        self.assertEqual(received[0]["message"]["payload"], {"account_id": self.account_shared.id, "new": 3})
        self.assertEqual(self._received(bob), [], "Bob is not on the shared mailbox's access list")

    def test_owner_is_notified_of_own_account(self):
        bob = self._listen_as(self.bob)
        self.account_bob._maildesk_notify_index_changed({"account_id": self.account_bob.id, "new": 1})
        self.trigger_notification_dispatching([self.account_bob])
        self.assertEqual(len(self._received(bob)), 1)

    def test_a_user_outside_maildesk_gets_no_account_channel(self):
        from odoo.tests.common import new_test_user

        outsider = new_test_user(self.env, "maildesk_outsider", groups="base.group_user")
        channels = self.env["ir.websocket"].with_user(outsider)._maildesk_account_channels()
        self.assertFalse(channels)
        self.assertEqual(self.env["ir.websocket"].with_user(self.alice)._maildesk_account_channels(),
                         self.account_alice | self.account_shared)
