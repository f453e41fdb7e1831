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

    def _notify(self, account, new):
        account._maildesk_notify_index_changed({"account_id": account.id, "new": new})
        self.trigger_notification_dispatching(self._maildesk_readers_partners(account))

    def _maildesk_readers_partners(self, account):
        return list(account._maildesk_readers().partner_id)

    def test_shared_account_notifies_its_users_only(self):
        alice, bob = self._listen_as(self.alice), self._listen_as(self.bob)
        self._notify(self.account_shared, 3)

        received = self._received(alice)
        self.assertEqual([n["message"]["type"] for n in received], ["maildesk/index_changed"])
        self.assertEqual(received[0]["message"]["payload"], {"account_id": self.account_shared.id, "new": 3})
        self.assertEqual(self._received(bob), [], "Bob is not on the shared mailbox's access list")

    def test_owner_is_notified_of_own_account(self):
        bob = self._listen_as(self.bob)
        self._notify(self.account_bob, 1)
        self.assertEqual(len(self._received(bob)), 1)

    def test_a_user_removed_from_a_share_stops_receiving_at_once(self):
        """No reconnect needed: readers are worked out when each notification is sent."""
        alice = self._listen_as(self.alice)
        self._notify(self.account_shared, 1)
        self.assertEqual(len(self._received(alice)), 1)
        self.account_shared.access_user_ids -= self.alice
        self._notify(self.account_shared, 2)
        self.trigger_notification_dispatching([self.alice.partner_id])
        self.assertEqual(self._received(alice), [], "Alice's open websocket hears nothing more")

    def test_readers_follow_the_record_rules(self):
        from odoo.tests.common import new_test_user

        outsider = new_test_user(self.env, "maildesk_outsider", groups="base.group_user")
        self.account_shared.access_user_ids |= outsider
        readers = self.account_shared._maildesk_readers()
        self.assertNotIn(outsider, readers, "not a MailDesk user: the rules give them nothing")
        self.assertIn(self.alice, readers)
        self.assertNotIn(self.bob, readers)
        for user in readers:
            self.assertTrue(self.account_shared.with_user(user).has_access("read"))
