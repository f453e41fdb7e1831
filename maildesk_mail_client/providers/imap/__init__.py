"""IMAP over imapclient: the ``ImapSession`` port of the engine.

``connection`` opens and logs in, ``session`` is the port, ``folders`` and
``metadata`` turn LIST and FETCH answers into domain values, ``wire`` has
the few exchanges imapclient cannot express, ``failures`` translates every
exception into ``application.errors``.
"""

from .connection import ImapConfig, connect, probe
from .session import ImapSessionAdapter

__all__ = ["ImapConfig", "ImapSessionAdapter", "connect", "probe"]
