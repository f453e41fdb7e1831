"""The account's buttons are RPC endpoints: who may call them, how often, and the cron budget.

Each button is called as RPC calls it: ``with_user(user)``, no sudo.
"""

import datetime as dt
from unittest.mock import patch

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tools import config

from .common import MaildeskCase

_PROBE = "odoo.addons.maildesk_mail_client.models.mailbox_account.probe"


@tagged("post_install", "-at_install")
class TestAccountActions(MaildeskCase):
    def setUp(self):
        super().setUp()
        # Alice only reads the shared mailbox; the boss (a MailDesk administrator) owns it.
        self.as_alice = self.account_shared.with_user(self.alice)
        self.as_boss = self.account_shared.with_user(self.boss)

    def _reconnect_needed(self, account):
        account.write({"auth_state": "reconnect_needed"})

    def _age_request(self, account, seconds=61):
        account.sync_requested_at = fields.Datetime.now() - dt.timedelta(seconds=seconds)

    # Test connection ---------------------------------------------------

    def test_reader_cannot_probe_the_server(self):
        with patch(_PROBE, return_value="ok") as probe:
            with self.assertRaises(AccessError):
                self.as_alice.action_test_connection()
            # Owning an account does not make a plain user its administrator either.
            with self.assertRaises(AccessError):
                self.account_alice.with_user(self.alice).action_test_connection()
        probe.assert_not_called()

    def test_administrator_can_probe_the_server(self):
        with patch(_PROBE, return_value="Logged in as x") as probe:
            result = self.as_boss.action_test_connection()
        self.assertEqual(result["params"]["type"], "success")
        config_sent = probe.call_args.args[0]
        self.assertEqual((config_sent.host, config_sent.password), ("localhost", "secret"))

    # Sync now ----------------------------------------------------------

    def test_reader_may_ask_for_a_sync_once_a_minute(self):
        self.as_alice.action_sync_now()
        self.assertTrue(self.account_shared.sync_requested_at)
        with self.assertRaises(UserError) as error:
            self.as_alice.action_sync_now()
        self.assertIn("less than a minute ago", str(error.exception))
        # The limit is the account's, not the user's.
        with self.assertRaises(UserError):
            self.as_boss.action_sync_now()
        self._age_request(self.account_shared)
        self.as_alice.action_sync_now()

    def test_reader_cannot_clear_reconnect_needed(self):
        self._reconnect_needed(self.account_shared)
        with self.assertRaises(UserError) as error:
            self.as_alice.action_sync_now()
        self.assertIn("fix its credentials", str(error.exception))
        self.assertEqual(self.account_shared.auth_state, "reconnect_needed")
        self.assertFalse(self.account_shared.sync_requested_at)
        # Nor can the plain user who owns an account.
        self._reconnect_needed(self.account_alice)
        with self.assertRaises(UserError):
            self.account_alice.with_user(self.alice).action_sync_now()
        self.assertEqual(self.account_alice.auth_state, "reconnect_needed")

    def test_administrator_clears_reconnect_needed_rate_limited(self):
        self._reconnect_needed(self.account_shared)
        self.as_boss.action_sync_now()
        self.assertEqual(self.account_shared.auth_state, "ok")
        # Every retry is a login attempt: an administrator is limited too.
        self._reconnect_needed(self.account_shared)
        with self.assertRaises(UserError):
            self.as_boss.action_sync_now()
        self.assertEqual(self.account_shared.auth_state, "reconnect_needed")
        self._age_request(self.account_shared)
        self.as_boss.action_sync_now()
        self.assertEqual(self.account_shared.auth_state, "ok")

    def test_sync_of_an_unreadable_account_is_refused(self):
        with self.assertRaises(AccessError):
            self.account_bob.with_user(self.alice).action_sync_now()
        self.assertFalse(self.account_bob.sync_requested_at)

    def test_rate_limit_is_per_account(self):
        self.as_alice.action_sync_now()
        self.account_alice.with_user(self.alice).action_sync_now()
        self.assertTrue(self.account_alice.sync_requested_at)

    # Cron budget -------------------------------------------------------

    def test_cron_budget_follows_odoo_limits(self):
        Account = self.env["mailbox.account"]
        cases = [
            ({"limit_time_real_cron": 0, "limit_time_real": 120}, 60.0),   # 0: no cron limit
            ({"limit_time_real_cron": -1, "limit_time_real": 120}, 2.0),   # -1: use limit_time_real
            ({"limit_time_real_cron": -1, "limit_time_real": 0}, 60.0),    # ... which may be off too
            ({"limit_time_real_cron": None, "limit_time_real": 120}, 2.0),
            ({"limit_time_real_cron": 300, "limit_time_real": 120}, 5.0),  # > 0: the cron's own limit
            ({"limit_time_real_cron": 30, "limit_time_real": 120}, 1.0),   # never below a second
        ]
        for options, budget in cases:
            with self.subTest(**options), patch.dict(config.options, options):
                self.assertEqual(Account._maildesk_cron_budget(), budget)
