"""Gmail through the Gmail API (google-api-python-client), as a feed provider.

``client`` calls the API (discovery built for a configurable endpoint,
batches, backoff, tokens), ``quota`` paces calls under the per-user quota,
``mapper`` turns labels and messages into domain values, ``mailbox`` is
the Mailbox port, ``history`` its account feed and ``reconcile`` the
comparison of one folder by id.
"""

from .client import GmailClient, GmailConfig
from .mailbox import GmailMailbox

__all__ = ["GmailClient", "GmailConfig", "GmailMailbox"]
