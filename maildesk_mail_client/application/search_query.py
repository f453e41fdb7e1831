"""What a user types in the inbox's search box, as a value the index repository can serve.

``parse("invoice from:alice subject:\"two words\" has:attachment is:unread before:2024-05-01")``

- free words (and ``"quoted phrases"``) are searched over subject, sender,
  recipients and snippet;
- ``from:``, ``to:`` (To and Cc) and ``subject:`` take a word or a quoted
  phrase, each searched in its own header;
- ``has:attachment``, ``is:unread``, ``is:read``, ``is:flagged`` (``is:starred``);
- ``before:YYYY-MM-DD`` (messages dated before that day) and
  ``after:YYYY-MM-DD`` (that day and later), days in the user's time zone.

Operators are case-insensitive. Anything else -- an unknown operator, a
malformed date, a stray quote -- is searched as words: parsing never raises.

Matching is by whole words, and by prefix for the word still being typed (the
last unquoted word of the box) and for unquoted operator values (``from:ali``
finds alice@example.com). :func:`tokens` is the one place that says what a
word is; the repository's full-text expressions split stored text the same way.
"""

import dataclasses
import datetime as dt
import re
import zoneinfo

#: Whitespace and ASCII punctuation separate words (repositories/fulltext.py splits stored text alike).
WORD_SEPARATORS = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())
_SPLIT = re.compile("[\\s" + re.escape(WORD_SEPARATORS) + "]+")

_OPERATOR = re.compile(r"([A-Za-z]+):(.*)", re.DOTALL)
_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})\Z")

_IS_VALUES = {
    "unread": ("unread", True),
    "read": ("unread", False),
    "seen": ("unread", False),
    "flagged": ("flagged", True),
    "starred": ("flagged", True),
}
_HAS_VALUES = {"attachment", "attachments"}


def tokens(text):
    """The words of ``text``: runs of characters between whitespace and ASCII punctuation."""
    return [token for token in _SPLIT.split(text or "") if token]


@dataclasses.dataclass(frozen=True)
class Term:
    """A word, or a phrase (words that must follow each other), searched in one place."""

    text: str
    phrase: bool = False  # typed in quotes: the words in this order
    prefix: bool = False  # its last word may be the start of a longer one

    @property
    def words(self):
        return tokens(self.text)


@dataclasses.dataclass(frozen=True)
class SearchQuery:
    words: tuple = ()  # Terms over subject, sender, recipients and snippet
    from_: tuple = ()  # Terms, each must match the sender
    to: tuple = ()  # Terms, each must match To or Cc
    subject: tuple = ()  # Terms, each must match the subject
    has_attachment: bool = False
    unread: bool | None = None  # True: unread only; False: read only
    flagged: bool = False
    before: dt.date | None = None  # dated strictly before this day
    after: dt.date | None = None  # dated this day or later

    @property
    def is_empty(self):
        return self == SearchQuery()

    @property
    def has_text(self):
        return any(term.words for term in (*self.words, *self.from_, *self.to, *self.subject))

    def date_bounds(self, tz=None):
        """``(after, before)`` as naive UTC datetimes (the index's dates), days taken in ``tz``."""
        zone = _zone(tz)

        def start_of(day):
            if day is None:
                return None
            local = dt.datetime.combine(day, dt.time.min).replace(tzinfo=zone)
            return local.astimezone(dt.timezone.utc).replace(tzinfo=None)

        return start_of(self.after), start_of(self.before)


def _zone(tz):
    if not tz:
        return dt.timezone.utc
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return dt.timezone.utc


def _date(value):
    match = _DATE.match(value.strip())
    if not match:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _pieces(text):
    """Split on whitespace, keeping quoted runs together: [(raw, value, quoted, op)].

    ``op`` is the operator name when the piece is ``name:value``; ``value``
    has its quotes removed. An unclosed quote runs to the end of the text.
    """
    pieces = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        op = None
        match = re.match(r"([A-Za-z]+):", text[i:])
        if match:
            op = match.group(1).lower()
            i += match.end()
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            value = text[i + 1:end]
            i = end + 1
            # "a"b sticks together as Gmail does not; keep it simple: a quote ends the piece.
            pieces.append((text[start:i], value, True, op))
            continue
        while i < n and not text[i].isspace():
            i += 1
        value = text[start:i] if op is None else text[start + len(op) + 1:i]
        pieces.append((text[start:i], value, False, op))
    return pieces


def parse(text):
    """The :class:`SearchQuery` for ``text``; never raises (anything it cannot read is words)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    values = {"words": [], "from_": [], "to": [], "subject": []}
    flags = {}
    pieces = _pieces(text)
    typing = None  # the free word the text ends with, still being typed
    i = 0
    while i < len(pieces):
        raw, value, quoted, op = pieces[i]
        i += 1
        if op and not value and not quoted and i < len(pieces) and pieces[i][3] is None:
            # "from: alice" -- the value is the next piece
            _raw, value, quoted, _op = pieces[i]
            raw = f"{raw}{_raw}"
            i += 1
        if op in ("from", "to", "subject"):
            if tokens(value):
                key = "from_" if op == "from" else op
                values[key].append(Term(value, phrase=quoted, prefix=not quoted))
            continue
        if op == "has" and not quoted and value.lower() in _HAS_VALUES:
            flags["has_attachment"] = True
            continue
        if op == "is" and not quoted and value.lower() in _IS_VALUES:
            name, setting = _IS_VALUES[value.lower()]
            flags[name] = setting
            continue
        if op in ("before", "after") and not quoted and _date(value):
            flags[op] = _date(value)
            continue
        # A free word, a phrase, or something we do not know: words.
        if op and not quoted:
            value = raw  # "foo:bar" is the words foo and bar
        elif op:
            values["words"].append(Term(op))  # foo:"b c" is the word foo and the phrase "b c"
        if tokens(value):
            values["words"].append(Term(value, phrase=quoted))
            if i == len(pieces) and not quoted and not text[-1].isspace():
                typing = len(values["words"]) - 1
    words = values["words"]
    if typing is not None:
        words[typing] = dataclasses.replace(words[typing], prefix=True)
    return SearchQuery(
        words=tuple(words), from_=tuple(values["from_"]), to=tuple(values["to"]),
        subject=tuple(values["subject"]), **flags,
    )
