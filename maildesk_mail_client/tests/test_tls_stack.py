"""Our libraries (msal, Google's clients) must not break Odoo's TLS stack.

They pull in newer cryptography; the pins in constraints.txt keep pyOpenSSL,
cryptography and urllib3 on versions that work together and with Odoo 18.
This builds a real TLS context with pyOpenSSL from a key made by
cryptography, the way Odoo's own code uses them.
"""

import datetime
import importlib

from odoo.tests import tagged
from odoo.tests.common import BaseCase


@tagged("post_install", "-at_install")
class TestTlsStack(BaseCase):
    def test_libraries_import_together(self):
        for name in ("googleapiclient.discovery", "google.auth", "google.cloud.pubsub_v1", "imapclient",
                     "msal", "requests", "OpenSSL.SSL", "cryptography.x509"):
            with self.subTest(module=name):
                importlib.import_module(name)

    def test_pyopenssl_context_with_cryptography_key(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        from OpenSSL import SSL, crypto

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maildesk.test")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate(crypto.X509.from_cryptography(cert))
        context.use_privatekey(crypto.PKey.from_cryptography_key(key))
        context.check_privatekey()
