"""Thread keys from the threading headers.

The root of a conversation is the first Message-ID in References (RFC 5322
§3.6.4 puts the oldest ancestor first), else In-Reply-To, else the message
itself. That is what Thunderbird falls back to when subjects disagree, and
it needs no look-up of other rows, so it can be computed at upsert time.
"""

import re

_MSGID = re.compile(r"<([^<>\s]+)>")


def message_ids(header):
    """Message-IDs in a References / In-Reply-To header, in order, normalised."""
    if not header:
        return []
    found = _MSGID.findall(header)
    if not found:
        # Some mailers drop the angle brackets; take the bare tokens.
        found = [token for token in header.split() if "@" in token]
    return [value.strip().lower() for value in found]


def thread_key(message_id, in_reply_to, references, fallback):
    for header in (references, in_reply_to, message_id):
        ids = message_ids(header)
        if ids:
            return ids[0]
    return fallback
