"""Outlook / Microsoft 365 over Microsoft Graph v1.0: the ``Mailbox`` port's adapter and mapper.

``config`` says where and who, ``auth`` turns the refresh token into access
tokens (saving rotated ones first), ``graph`` is the HTTP client (immutable
ids, 4 requests at a time, throttling, ``$batch``), ``folders`` and
``mapper`` turn Graph JSON into domain values, ``changes`` reads
``messages/delta``, ``mailbox`` answers the engine.
"""

from .config import OutlookConfig
from .mailbox import OutlookMailbox

__all__ = ["OutlookConfig", "OutlookMailbox"]
