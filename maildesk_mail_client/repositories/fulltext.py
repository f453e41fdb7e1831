"""The full-text documents the inbox searches, as SQL expressions, and their GIN indexes.

A document is ``to_tsvector('simple', …)`` over one or more columns of
``maildesk_message_index``, with the punctuation PostgreSQL's parser keeps
inside a token turned into spaces first: it would otherwise keep
``alice.smith@example.com``, ``example.com``, ``a/b``, ``-12`` or ``<tag>``
whole (or drop it), and ``from:example`` or ``smith`` would not find them.
Every other ASCII punctuation mark already separates words for the parser,
so the stored words are exactly what the query side
(``application/search_query.tokens``: whitespace and ASCII punctuation)
makes of the same text -- an engine test checks it on random strings. Each
word is handed to ``to_tsquery('simple', …)``, so PostgreSQL lower-cases and
parses both sides alike. ``simple`` has no stop words and no stemming: a
mail client searches for what was typed.

The index and the query must use the same expression, character for
character (PostgreSQL matches an expression index by its expression): both
come from :func:`document`. No extension is needed.
"""

#: What the parser would keep inside a token (email, host, URL, path, number, hyphenated word,
#: XML tag or entity). A short list: translate() costs a scan of it per character stored.
#: No '%', which would need escaping in statements sent with parameters.
TOKEN_PUNCTUATION = "@./:-+_~\\<>&"


def _literal(text):
    return "'" + text.replace("'", "''") + "'"


_FROM_CHARS = _literal(TOKEN_PUNCTUATION)
_TO_SPACES = _literal(" " * len(TOKEN_PUNCTUATION))

#: document name -> the columns it covers
DOCUMENTS = {
    # free words: subject, sender, recipients and snippet
    "all": ("subject", "from_address", "to_addresses", "cc_addresses", "snippet"),
    "from": ("from_address",),
    "to": ("to_addresses", "cc_addresses"),
    "subject": ("subject",),
}


def text_of(name, alias=None):
    """The text of a document: its columns, qualified by ``alias`` when given, joined by spaces."""
    prefix = f"{alias}." if alias else ""
    return " || ' ' || ".join(f"coalesce({prefix}{column}, '')" for column in DOCUMENTS[name])


def document(name, alias=None):
    """The tsvector expression of a document, its columns qualified by ``alias`` when given."""
    return f"to_tsvector('simple'::regconfig, translate({text_of(name, alias)}, {_FROM_CHARS}, {_TO_SPACES}))"


#: (name, index definition, where, method) for repositories/message_index.py::INDEXES
GIN_INDEXES = tuple(
    (f"maildesk_message_index_fts_{name}_idx", f"({document(name)})", None, "gin")
    for name in DOCUMENTS
)
