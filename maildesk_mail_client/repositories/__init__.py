"""SQL for the hot paths, one module per table.

They take any DB-API cursor (``execute``/``fetchall``/``rowcount``): Odoo's
``env.cr`` in production, a psycopg2 cursor in the engine tests, which run
this very SQL against a real PostgreSQL. Nothing here imports Odoo.
"""

from .account_lease import AccountLeaseRepository
from .folder import FolderRepository
from .mailbox_account import AccountRepository
from .message_index import MessageIndexRepository, delivery_key

__all__ = [
    "AccountLeaseRepository",
    "AccountRepository",
    "FolderRepository",
    "MessageIndexRepository",
    "delivery_key",
]
