"""Where a label's walk down stands, kept in ``backfill_cursor``.

Gmail's page token says where the next page starts, but not where the
walk is in the label's mail: the reconciliation of a label still
backfilling must stop there (what lies below is the walk's to read, once),
so the cursor also names the last message the walk took and its
internalDate: ``{"t": page token, "i": message id, "d": internalDate ms}``.
A bare token (a cursor stored before this format) is read as a token
without a position.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json


@dataclasses.dataclass(frozen=True)
class WalkPosition:
    token: str | None
    last_id: str | None = None
    last_date: dt.datetime | None = None  # naive UTC, like the index's internal_date

    def encode(self) -> str | None:
        if self.token is None:
            return None
        if self.last_id is None:
            return self.token
        millis = None if self.last_date is None else round(
            self.last_date.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
        return json.dumps({"t": self.token, "i": self.last_id, "d": millis}, separators=(",", ":"))


def decode(cursor: str | None) -> WalkPosition:
    if not cursor:
        return WalkPosition(None)
    if not cursor.startswith("{"):
        return WalkPosition(cursor)  # a bare page token
    try:
        raw = json.loads(cursor)
        millis = raw.get("d")
        when = None if millis is None else dt.datetime.fromtimestamp(int(millis) / 1000, dt.timezone.utc)
        return WalkPosition(raw.get("t") or None, raw.get("i"), when and when.replace(tzinfo=None))
    except (ValueError, TypeError, AttributeError, OverflowError, OSError):
        return WalkPosition(None)  # unreadable: the walk starts over from the top, which is idempotent
