"""The engine tests' schema and the repositories' SQL match the real Odoo tables."""

import pathlib
import re

from odoo.tests import tagged
from odoo.tests.common import TransactionCase

from ..repositories import account_lease, folder, ingest_queue, mailbox_account, message_index, outbox, ui_cache

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "tests" / "harness" / "schema.sql"

_PG_TYPES = {"serial": "int4", "varchar": "varchar", "text": "text", "bool": "bool",
             "int4": "int4", "int8": "int8", "timestamp": "timestamp", "jsonb": "jsonb", "bytea": "bytea"}


def _schema_columns(text):
    tables = {}
    for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", text, re.S):
        for line in body.splitlines():
            match = re.match(r"\s+(\w+) (\w+)", line)
            if match and match[1] != "CONSTRAINT":
                tables.setdefault(table, {})[match[1]] = _PG_TYPES[match[2]]
    return tables


@tagged("post_install", "-at_install")
class TestEngineSchema(TransactionCase):
    def test_engine_test_schema_matches_odoo_tables(self):
        if not SCHEMA.exists():
            self.skipTest("tests/harness/schema.sql is not beside the addon (installed without the repo)")
        expected = _schema_columns(SCHEMA.read_text())
        self.assertEqual(set(expected), {"mailbox_account", "maildesk_folder", "maildesk_message_index",
                                         "maildesk_account_lease", "maildesk_ui_cache", "maildesk_outbox",
                                         "maildesk_folder_seen"})
        for table, columns in expected.items():
            self.env.cr.execute("SELECT column_name, udt_name FROM information_schema.columns WHERE table_name = %s",
                                [table])
            actual = dict(self.env.cr.fetchall())
            for column, pg_type in columns.items():
                with self.subTest(table=table, column=column):
                    self.assertEqual(actual.get(column), pg_type)

    def test_repository_columns_are_model_fields(self):
        for module, model in ((message_index, "maildesk.message_index"), (folder, "maildesk.folder"),
                              (account_lease, "maildesk.account_lease"), (mailbox_account, "mailbox.account"),
                              (ui_cache, "maildesk.ui_cache"), (outbox, "maildesk.outbox"),
                              (ingest_queue, "maildesk.ingest_queue")):
            missing = set(module.COLUMNS) - set(self.env[model]._fields)
            self.assertFalse(missing, f"{module.__name__} writes columns {model} does not have")
        missing = set(ingest_queue.ACCOUNT_COLUMNS) - set(self.env["mailbox.account"]._fields)
        self.assertFalse(missing, f"repositories.ingest_queue writes account columns that are not fields: {missing}")

    def test_constraints_the_upserts_rely_on(self):
        self.env.cr.execute("SELECT conname FROM pg_constraint WHERE contype = 'u'")
        names = {name for (name,) in self.env.cr.fetchall()}
        self.assertLessEqual({"maildesk_message_index_delivery_key_uniq", "maildesk_folder_account_path_uniq",
                              "maildesk_account_lease_account_purpose_uniq"}, names)
        self.env.cr.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'maildesk_message_index_inbox_list_idx'")
        self.assertTrue(self.env.cr.fetchone(), "the inbox list index is missing")
