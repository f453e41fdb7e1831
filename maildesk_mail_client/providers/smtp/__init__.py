"""Sending over SMTP for IMAP accounts (smtplib), with the Sent copy and the proof over IMAP."""
