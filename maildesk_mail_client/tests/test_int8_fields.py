from odoo.tests import tagged

from .common import MaildeskCase


@tagged("post_install", "-at_install")
class TestInt8Fields(MaildeskCase):
    def test_columns_are_int8(self):
        expected = {
            ("maildesk_folder", "uidvalidity"), ("maildesk_folder", "uidnext"),
            ("maildesk_folder", "highest_modseq"), ("maildesk_folder", "last_uid"),
            ("maildesk_folder", "low_uid"), ("maildesk_message_index", "uid"),
            ("maildesk_message_index", "modseq"), ("mailbox_account", "gmail_history_id"),
        }
        self.env.cr.execute("""
            SELECT table_name, column_name FROM information_schema.columns
             WHERE data_type = 'bigint'
               AND table_name IN ('maildesk_folder', 'maildesk_message_index', 'mailbox_account')
        """)
        self.assertLessEqual(expected, set(self.env.cr.fetchall()))

    def test_round_trip_through_the_orm(self):
        folder = self.make_folder(self.account_alice)
        folder.write({"uidvalidity": 4_000_000_000, "highest_modseq": 2**62, "last_uid": 4_294_967_295})
        message = self.make_message(folder, 4_000_000_000, modseq=2**62)
        self.account_alice.gmail_history_id = 2**62
        self.env.flush_all()
        self.env.invalidate_all()
        self.assertEqual((folder.uidvalidity, folder.highest_modseq, folder.last_uid),
                         (4_000_000_000, 2**62, 4_294_967_295))
        self.assertEqual((message.uid, message.modseq), (4_000_000_000, 2**62))
        self.assertEqual(self.account_alice.gmail_history_id, 2**62)
        self.assertEqual(self.env["maildesk.message_index"].search([("uid", "=", 4_000_000_000)]), message)
