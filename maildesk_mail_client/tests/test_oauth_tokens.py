"""OAuth goes through Odoo's own mixins; we only make sure a rotated refresh token is kept."""

from unittest.mock import patch

from odoo.tests import tagged

from .common import MaildeskCase

_TOKEN_ENDPOINT = "odoo.addons.google_gmail.models.google_gmail_mixin.requests.post"


class _TokenResponse:
    """What Google's token endpoint answers (no machine here reaches Google)."""

    ok = True

    def __init__(self, payload):
        self.payload = payload

    def json(self):
        return self.payload


@tagged("post_install", "-at_install")
class TestOAuthTokens(MaildeskCase):
    def setUp(self):
        super().setUp()
        self.env["ir.config_parameter"].sudo().set_param("google_gmail_client_id", "id")
        self.env["ir.config_parameter"].sudo().set_param("google_gmail_client_secret", "secret")
        self.account = self.env["mailbox.account"].create({
            "name": "Gmail", "provider": "gmail", "google_gmail_refresh_token": "first-refresh"})

    def test_rotated_refresh_token_is_saved(self):
        answer = {"access_token": "access-2", "expires_in": 3600, "refresh_token": "second-refresh"}
        with patch(_TOKEN_ENDPOINT, return_value=_TokenResponse(answer)) as post:
            access, _expiry = self.account._fetch_gmail_access_token(self.account.google_gmail_refresh_token)
        self.assertEqual(access, "access-2")
        self.assertEqual(post.call_args.kwargs["data"]["refresh_token"], "first-refresh")
        self.assertEqual(self.account.google_gmail_refresh_token, "second-refresh")

    def test_unrotated_refresh_token_is_kept(self):
        answer = {"access_token": "access-2", "expires_in": 3600}
        with patch(_TOKEN_ENDPOINT, return_value=_TokenResponse(answer)):
            self.account._fetch_gmail_access_token(self.account.google_gmail_refresh_token)
        self.assertEqual(self.account.google_gmail_refresh_token, "first-refresh")

    def test_a_user_can_ask_for_a_sync_of_an_account_they_read(self):
        self.env["ir.cron.trigger"].search([]).unlink()
        self.account_alice.with_user(self.alice).action_sync_now()
        crons = self.env["ir.cron.trigger"].search([]).cron_id
        self.assertIn(self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap"), crons)
