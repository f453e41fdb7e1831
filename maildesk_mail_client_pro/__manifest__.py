{
    "name": "MailDesk Mail Client Pro",
    "summary": "Two-way sync, Gmail and Outlook push, IMAP autopilot and body prefetch for MailDesk",
    "version": "18.0.1.0.0",
    "category": "Productivity/Discuss",
    "author": "MailDesk",
    "website": "https://github.com/maildesk/maildesk",
    "license": "LGPL-3",
    "depends": ["maildesk_mail_client"],
}
