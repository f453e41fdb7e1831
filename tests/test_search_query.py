"""The inbox's search box (issue 7): free words, operators, dates; anything else is words, nothing raises."""

import datetime as dt
import random
import string

import pytest

from maildesk_mail_client.application.search_query import SearchQuery, Term, parse, tokens


def words(query):
    return [(term.text, term.phrase, term.prefix) for term in query.words]


def test_every_operator_of_the_issue():
    query = parse('invoice from:alice to:bob subject:"two words" has:attachment is:unread is:flagged '
                  "before:2024-05-01 after:2024-01-31")
    assert words(query) == [("invoice", False, False)]
    assert query.from_ == (Term("alice", prefix=True),)
    assert query.to == (Term("bob", prefix=True),)
    assert query.subject == (Term("two words", phrase=True),)
    assert (query.has_attachment, query.unread, query.flagged) == (True, True, True)
    assert (query.before, query.after) == (dt.date(2024, 5, 1), dt.date(2024, 1, 31))
    assert query.has_text and not query.is_empty


def test_free_words_and_phrases():
    query = parse('quarterly "budget review" report')
    assert words(query) == [("quarterly", False, False), ("budget review", True, False), ("report", False, True)]
    assert [term.words for term in query.words] == [["quarterly"], ["budget", "review"], ["report"]]


def test_only_the_word_being_typed_is_a_prefix():
    assert words(parse("hello wor")) == [("hello", False, False), ("wor", False, True)]
    assert words(parse("hello wor ")) == [("hello", False, False), ("wor", False, False)], "a space ends the word"
    assert words(parse('hello "wor"')) == [("hello", False, False), ("wor", True, False)], "quoted: exact"
    assert words(parse("hello from:ali")) == [("hello", False, False)], "the last piece is an operator"


def test_operator_values_are_prefixes_unless_quoted():
    assert parse("from:ali").from_ == (Term("ali", prefix=True),)
    assert parse('from:"Alice Smith"').from_ == (Term("Alice Smith", phrase=True),)
    assert parse("subject:invoice subject:2024").subject == (Term("invoice", prefix=True), Term("2024", prefix=True))


def test_operators_are_case_insensitive_and_take_a_value_after_a_space():
    query = parse("FROM:Bob Is:Unread HAS:ATTACHMENT")
    assert query.from_ == (Term("Bob", prefix=True),)
    assert query.unread is True and query.has_attachment
    assert parse("from: alice").from_ == (Term("alice", prefix=True),)
    assert parse("from: is:unread").from_ == () and parse("from: is:unread").unread is True


@pytest.mark.parametrize(("text", "field", "value"), [
    ("is:read", "unread", False),
    ("is:seen", "unread", False),
    ("is:unread", "unread", True),
    ("is:starred", "flagged", True),
    ("has:attachments", "has_attachment", True),
    ("after:2024-2-9", "after", dt.date(2024, 2, 9)),
])
def test_aliases(text, field, value):
    query = parse(text)
    assert getattr(query, field) == value
    assert query.words == ()


@pytest.mark.parametrize(("text", "expected_words"), [
    ("label:work", ["label", "work"]),  # unknown operator: its words
    ("is:important", ["is", "important"]),  # unknown value of a known operator
    ("has:pdf", ["has", "pdf"]),
    ("before:2024-13-01", ["before", "2024", "13", "01"]),  # not a date
    ("before:yesterday", ["before", "yesterday"]),
    ("after:2024-02-30", ["after", "2024", "02", "30"]),
    ('label:"a b"', ["label", "a", "b"]),
    ("http://example.com/x?y=1", ["http", "example", "com", "x", "y", "1"]),
])
def test_what_is_not_an_operator_is_words(text, expected_words):
    query = parse(text)
    assert [word for term in query.words for word in term.words] == expected_words
    assert query.before is None and query.after is None and not query.from_


def test_an_unclosed_quote_runs_to_the_end():
    query = parse('subject:"unclosed phrase')
    assert query.subject == (Term("unclosed phrase", phrase=True),)
    assert words(parse('"open phrase')) == [("open phrase", True, False)]


def test_empty_and_odd_input():
    for text in ("", "   ", None, '"', '""', ":", "from:", "subject:", "!!! ???", "from:\"\""):
        query = parse(text)
        assert not query.has_text, text
    assert [term.words for term in parse("is:").words] == [["is"]], "a known operator without its value: a word"
    assert parse("").is_empty and parse(None).is_empty
    assert parse(42).words == (Term("42", prefix=True),)


def test_tokens_split_on_punctuation_and_keep_letters_of_any_script():
    assert tokens("Alice O'Neil <alice.o-neil@example.com>") == ["Alice", "O", "Neil", "alice", "o", "neil",
                                                                  "example", "com"]
    assert tokens("café-crème 100% déjà_vu") == ["café", "crème", "100", "déjà", "vu"]
    assert tokens("日本語 メール") == ["日本語", "メール"]


def test_date_bounds_are_days_in_the_users_time_zone_as_utc():
    query = parse("after:2024-03-01 before:2024-03-02")
    assert query.date_bounds() == (dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 2))
    assert query.date_bounds("Europe/Brussels") == (dt.datetime(2024, 2, 29, 23), dt.datetime(2024, 3, 1, 23))
    assert query.date_bounds("Not/AZone") == (dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 2))
    assert SearchQuery().date_bounds("UTC") == (None, None)


def test_parsing_never_raises():
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t\n\"é日\x00"
    prefixes = ["from:", "to:", "subject:", "is:", "has:", "before:", "after:", '"', ""]
    for _ in range(5000):
        text = "".join(rng.choice(prefixes) + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
                       for _ in range(rng.randint(0, 6)))
        query = parse(text)
        assert isinstance(query, SearchQuery)
        for term in (*query.words, *query.from_, *query.to, *query.subject):
            assert term.words, f"a term without words from {text!r}"
