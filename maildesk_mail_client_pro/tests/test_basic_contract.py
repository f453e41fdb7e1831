"""The seams Pro builds on (DESIGN §2-3). If Basic renames or reshapes one, this fails."""

import inspect

from odoo.tests import tagged
from odoo.tests.common import TransactionCase


@tagged("post_install", "-at_install")
class TestBasicContract(TransactionCase):
    def test_hooks_exist_with_the_documented_signatures(self):
        Account = self.env["mailbox.account"]
        expected = {
            "_maildesk_after_message_index_upserted": ["account_id", "folder", "uid", "index_id", "is_new"],
            "_maildesk_enqueue_folder_open_prefetch": ["account_id", "folder_id", "top_index_ids"],
        }
        for name, parameters in expected.items():
            with self.subTest(hook=name):
                signature = inspect.signature(getattr(type(Account), name))
                self.assertEqual(list(signature.parameters)[1:], parameters)
