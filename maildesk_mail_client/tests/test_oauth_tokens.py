"""OAuth goes through Odoo's own mixins; we only make sure a rotated refresh token is kept.

No machine here reaches Google: a token endpoint on loopback answers as Google's does
(``application/x-www-form-urlencoded`` in, JSON out), and the account posts to it through
``maildesk.google_token_endpoint``, over a real socket.
"""

import contextlib
import http.server
import json
import threading
import urllib.parse

from odoo.tests import tagged

from .common import MaildeskCase


class LocalGoogleTokenEndpoint:
    """Google's OAuth token endpoint on 127.0.0.1: records each form, answers ``answer``."""

    def __init__(self, answer):
        self.answer = answer
        self.forms = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                endpoint.forms.append(dict(urllib.parse.parse_qsl(self.rfile.read(length).decode())))
                body = json.dumps(endpoint.answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    @contextlib.contextmanager
    def running(self):
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


@tagged("post_install", "-at_install")
class TestOAuthTokens(MaildeskCase):
    def setUp(self):
        super().setUp()
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("google_gmail_client_id", "id")
        params.set_param("google_gmail_client_secret", "secret")
        self.account = self.env["mailbox.account"].create({
            "name": "Gmail", "provider": "gmail", "google_gmail_refresh_token": "first-refresh"})

    def _refresh_against(self, answer):
        google = LocalGoogleTokenEndpoint(answer)
        self.env["ir.config_parameter"].sudo().set_param("maildesk.google_token_endpoint", google.url)
        with google.running():
            access, _expiry = self.account._fetch_gmail_access_token(self.account.google_gmail_refresh_token)
        return access, google.forms

    def test_rotated_refresh_token_is_saved(self):
        access, forms = self._refresh_against(
            {"access_token": "access-2", "expires_in": 3600, "refresh_token": "second-refresh"})
        self.assertEqual(access, "access-2")
        self.assertEqual([(f["grant_type"], f["refresh_token"], f["client_id"]) for f in forms],
                         [("refresh_token", "first-refresh", "id")])
        self.assertEqual(self.account.google_gmail_refresh_token, "second-refresh")

    def test_unrotated_refresh_token_is_kept(self):
        self._refresh_against({"access_token": "access-2", "expires_in": 3600})
        self.assertEqual(self.account.google_gmail_refresh_token, "first-refresh")

    def test_a_user_can_ask_for_a_sync_of_an_account_they_read(self):
        self.env["ir.cron.trigger"].search([]).unlink()
        self.account_alice.with_user(self.alice).action_sync_now()
        crons = self.env["ir.cron.trigger"].search([]).cron_id
        self.assertIn(self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap"), crons)
