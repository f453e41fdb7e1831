"""An Outlook account synced by the real crons, against the local Graph of the test harness.

The local Graph (``tests/harness/graph_server.py`` in the repository) is a
real HTTPS server on loopback that speaks Graph v1.0 and Azure AD's token
endpoint, with a throwaway CA; the production adapter (msal + requests)
talks to it unchanged, pointed there by ``maildesk.graph_url``,
``maildesk.microsoft_authority`` and ``maildesk.microsoft_ca_file``. The
test command puts the repository on ``PYTHONPATH``; without it these
tests are skipped, and say so.
"""

from odoo.tests import tagged

from .common import MaildeskCase

try:
    from tests.harness.graph_server import GraphServer
except ImportError:  # not run from the repository (scripts/test sets PYTHONPATH)
    GraphServer = None


@tagged("post_install", "-at_install", "maildesk_outlook")
class TestOutlookSyncInOdoo(MaildeskCase):
    def setUp(self):
        super().setUp()
        if GraphServer is None:
            self.skipTest("tests.harness is not importable: run the suite through scripts/test")
        self.server = GraphServer()
        self.server.start()
        self.addCleanup(self.server.stop)
        self.world = self.server.world
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("microsoft_outlook_client_id", self.world.client_id)
        params.set_param("microsoft_outlook_client_secret", self.world.client_secret)
        params.set_param("maildesk.graph_url", self.server.url)
        params.set_param("maildesk.microsoft_authority", self.server.authority)
        params.set_param("maildesk.microsoft_ca_file", self.server.ca_file)
        (self.account_alice | self.account_bob | self.account_shared).sync_enabled = False
        self.account = self.env["mailbox.account"].create({
            "name": "Outlook", "provider": "outlook", "email": self.world.user_email, "user_id": self.alice.id,
            "microsoft_outlook_refresh_token": self.world.refresh_token,
        })
        self.Account = self.env["mailbox.account"]
        self.inbox = self.world.well_known("inbox")

    def _rows(self, folder_remote_id):
        folder = self.account.folder_ids.filtered(lambda f: f.remote_id == folder_remote_id)
        rows = self.env["maildesk.message_index"].search([("folder_id", "=", folder.id),
                                                          ("deleted_on_server", "=", False)])
        return {row.remote_id: row for row in rows}

    def _bootstrap(self):
        cron = self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap")
        progress = self.env["ir.cron.progress"].create({"cron_id": cron.id})
        self.Account.with_context(ir_cron_progress_id=progress.id)._cron_maildesk_bootstrap()
        return progress

    def test_connect_bootstrap_then_delta_through_the_crons(self):
        projects = self.world.add_folder("Projects", self.inbox)
        ids = [self.world.add_message(self.inbox, subject=f"Outlook {n}") for n in range(1, 81)]
        archived = self.world.add_message(projects, subject="In a child folder")

        progress = self._bootstrap()
        self.assertEqual(len(self._rows(self.inbox)), 50, "the first pass indexes the newest 50 of the inbox")
        self.assertEqual(set(self._rows(self.inbox)), set(ids[-50:]))
        self.assertGreater(progress.remaining, 0)
        for _ in range(10):
            if not self._bootstrap().remaining:
                break
        self.assertEqual(set(self._rows(self.inbox)), set(ids))
        self.assertEqual(set(self._rows(projects)), {archived})
        folder = self.account.folder_ids.filtered(lambda f: f.remote_id == projects)
        self.assertEqual(folder.path, "Inbox/Projects")
        self.assertEqual(self.account.folder_ids.filtered(lambda f: f.remote_id == self.inbox).role, "inbox")

        # Another client reads one message, flags another, moves a third, deletes a fourth; new mail arrives.
        moved_row = self._rows(self.inbox)[ids[2]]
        self.world.update(ids[0], is_read=True)
        self.world.update(ids[1], flagged=True)
        self.world.move(ids[2], projects)
        self.world.delete(ids[3])
        new = self.world.add_message(self.inbox, subject="Fresh")
        self.Account._cron_maildesk_outlook_delta()

        inbox = self._rows(self.inbox)
        self.assertEqual(set(inbox), set(ids) - {ids[2], ids[3]} | {new})
        self.assertTrue(inbox[ids[0]].is_seen)
        self.assertTrue(inbox[ids[1]].is_flagged)
        self.assertEqual(self._rows(projects)[ids[2]].id, moved_row.id, "a move keeps the message's row")
        self.assertEqual(self.account.auth_state, "ok")
        self.assertFalse(self.account.last_error)

    def test_rotated_refresh_token_is_saved_before_it_is_needed(self):
        first = self.world.refresh_token
        self.world.add_message(self.inbox, subject="One")
        self._bootstrap()
        self.account.invalidate_recordset()
        self.assertNotEqual(self.account.microsoft_outlook_refresh_token, first)
        self.assertEqual(self.account.microsoft_outlook_refresh_token, self.world.refresh_token)
        self.world.add_message(self.inbox, subject="Two")
        self.Account._cron_maildesk_outlook_delta()
        self.assertEqual(self.account.auth_state, "ok")

    def test_revoked_grant_asks_for_reconnect_with_what_to_do(self):
        self.world.revoke_refresh_token("invalid_grant")
        self._bootstrap()
        self.assertEqual(self.account.auth_state, "reconnect_needed")
        self.assertIn("Connect Outlook", self.account.last_error)

    def test_test_connection_signs_in_through_graph(self):
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "success")
        self.assertIn(self.world.user_email, result["params"]["message"])
