"""Header text as people read it: RFC 2047 words, unknown charsets, raw 8-bit.

Mail in the wild carries every kind of breakage, and one bad header must
never cost a message its row in the index, so nothing here raises: what
cannot be decoded exactly is decoded as well as it can be.
"""

import base64
import binascii
import functools
import re

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
# Labels mailers use for a superset, or for a charset Python does not know.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-1": "cp1252",  # Windows mailers label cp1252 text so
    "latin1": "cp1252",
    "us-ascii": "ascii",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
}
# C0 controls and DEL become spaces (NUL cannot even be stored in PostgreSQL
# text); invisible format characters, used to pad preview text, go away.
_CLEAN = str.maketrans(
    {**{code: " " for code in range(32)}, 127: " ",
     **dict.fromkeys(map(ord, "\u00ad\u034f\u200b\u200c\u200d\u2060\ufeff"), None)}
)


def decode_header(raw) -> str | None:
    """A header value (bytes or str) as one clean line of text; None when empty."""
    if raw is None:
        return None
    text = bytes_to_text(raw) if isinstance(raw, bytes) else str(raw)  # a bare numeric atom parses as int
    if "=?" in text:
        text = _decode_encoded_words(text)
    return squeeze(text) or None


def bytes_to_text(data: bytes, charset: str | None = None) -> str:
    """Decode with ``charset`` if it works, else as UTF-8, else with replacement characters."""
    codec = lookup_codec(charset) if charset else None
    for candidate in (codec, "utf-8"):
        text = _decode_strictly(data, candidate) if candidate else None
        if text is not None:
            return text
    # 8-bit bytes under no label, or under "ascii", are most often cp1252.
    lenient = codec if codec not in (None, "ascii") else "cp1252"
    text = _decode_leniently(data, lenient)
    # cp1252 with replacement maps every byte to something: this cannot fail.
    return text if text is not None else data.decode("cp1252", "replace")


def squeeze(text: str) -> str:
    """One line, single spaces, no control characters."""
    return " ".join(text.translate(_CLEAN).split())


@functools.lru_cache(maxsize=128)
def lookup_codec(charset: str) -> str | None:
    """Python's codec for a MIME charset label, or None when there is no text codec by that name."""
    name = charset.strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    # Not b"": decoding nothing skips the codec look-up. Decoding NUL and
    # 8-bit bytes with replacement is what bytes_to_text falls back on, so a
    # codec must manage it to be used at all. This rejects bytes-to-bytes
    # codecs ("base64", "zlib": LookupError), names Python refuses (a NUL in
    # the label: ValueError), and codecs that are not charsets: "undefined"
    # fails on everything, "idna" and "punycode" on 8-bit bytes.
    return name if _decode_leniently(b"\0\x80\xff", name) is not None else None


def _decode_strictly(data: bytes, codec: str) -> str | None:
    return _decode(data, codec, "strict")


def _decode_leniently(data: bytes, codec: str) -> str | None:
    return _decode(data, codec, "replace")


def _decode(data: bytes, codec: str, errors: str) -> str | None:
    """``data`` as text, or None when ``codec`` cannot make text of it.

    A codec is any code registered under that name, and a header can name
    any of them: not only UnicodeDecodeError but whatever else it raises
    means "not text in this charset", never a reason to lose the header.
    """
    try:
        return data.decode(codec, errors)
    except Exception:
        return None


def _decode_encoded_words(text: str) -> str:
    """RFC 2047 §6: adjacent encoded words join without the space between them.

    Consecutive words in one charset are joined as bytes before decoding,
    because mailers split multibyte characters across words.
    """
    out, pending, charset, position = [], b"", None, 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[position:match.start()]
        position = match.end()
        data = _word_bytes(match)
        if data is None:  # not a valid encoded word: keep it as written
            if pending:
                out.append(bytes_to_text(pending, charset))
            out.append(gap + match.group(0))
            pending, charset = b"", None
            continue
        word_charset = match.group(1).split("*", 1)[0].lower()  # RFC 2231 adds *language
        adjacent = charset is not None and not gap.strip()
        if adjacent and word_charset == charset:
            pending += data
            continue
        if pending:
            out.append(bytes_to_text(pending, charset))
        if not adjacent:
            out.append(gap)
        pending, charset = data, word_charset
    if pending:
        out.append(bytes_to_text(pending, charset))
    out.append(text[position:])
    return "".join(out)


def _word_bytes(match) -> bytes | None:
    _charset, encoding, payload = match.groups()
    try:
        ascii_payload = payload.encode("ascii")
        if encoding in "Bb":
            return base64.b64decode(ascii_payload + b"=" * (-len(ascii_payload) % 4), validate=True)
        return binascii.a2b_qp(ascii_payload, header=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
