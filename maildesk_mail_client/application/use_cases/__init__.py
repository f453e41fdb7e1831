"""The engine's use cases, one module each, in the order of DESIGN §3.

- :mod:`.discover_folders`  flow 1: folders, roles, renames, deletions
- :mod:`.bootstrap_account` flow 1: newest first, first chunk at once
- :mod:`.backfill`          flow 1: older history, claimed with SKIP LOCKED
- :mod:`.sync_account`      flow 2: incremental sync, INBOX first
- :mod:`.sync_folder`       flow 2: one folder's deltas under the deadline, then reconciliation
- :mod:`.sync_feed`         flow 2 for account-wide feeds (Gmail history): steps, expiry, reconciliation
- :mod:`.repair_sparse`     rows a change feed left thin (Graph), filled in batches
- :mod:`.account_run`       the lease, error and notification rules they share

The steps they share on one folder are in ``application/folder_steps.py``.
"""

from .backfill import backfill
from .bootstrap_account import bootstrap_account
from .repair_sparse import repair_sparse
from .sync_account import sync_account

__all__ = ["backfill", "bootstrap_account", "repair_sparse", "sync_account"]
