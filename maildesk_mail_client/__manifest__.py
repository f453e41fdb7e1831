{
    "name": "MailDesk Mail Client",
    "summary": "Read and answer Gmail, Outlook and IMAP mail inside Odoo: fast sync engine and inbox",
    "version": "18.0.4.1.0",
    "category": "Productivity/Discuss",
    "author": "MailDesk",
    "website": "https://github.com/maildesk/maildesk",
    "license": "LGPL-3",
    "depends": ["mail", "contacts", "google_gmail", "microsoft_outlook"],
    "external_dependencies": {
        "python": ["imapclient", "google-api-python-client", "google-auth", "msal", "requests", "nh3"],
    },
    "data": [
        "security/maildesk_security.xml",
        "security/ir.model.access.csv",
        "data/ir_cron_data.xml",
        "data/maildesk_read_params.xml",
        "views/mailbox_account_views.xml",
        "views/maildesk_folder_views.xml",
        "views/maildesk_message_index_views.xml",
        "views/maildesk_menus.xml",
        "views/maildesk_outbox_views.xml",
        "views/maildesk_inbox_views.xml",
        "views/maildesk_ingest_queue_views.xml",
        "wizards/maildesk_log_message_views.xml",
    ],
    "application": True,
    "assets": {
        "web.assets_backend": [
            "maildesk_mail_client/static/src/inbox/**/*",
        ],
        "web.assets_tests": [
            "maildesk_mail_client/static/tests/tours/**/*",
        ],
    },
}
