"""Mail HTML made fit to show: no script, no way out, no request to anywhere until the user says so.

``safe_html(html, cid_url, allow_remote)`` runs the message through ``nh3``
(the Python binding of Rust's ``ammonia``, an allow-list sanitizer built on
html5ever, the HTML5 parser of Servo: it parses as a browser does, so markup
written to be read differently by the sanitizer and the browser has nothing
to play on). Only the tags and attributes listed here survive; every URL is
judged here, attribute by attribute (``_Judge``); CSS, in ``style``
attributes and ``<style>`` blocks, goes through a small allow-list filter of
its own (``_css_declarations``, ``_stylesheet``).

What comes out has:

- no script, event handler, ``javascript:`` / ``vbscript:`` / ``data:text/html`` URL;
- no form, input or button; no meta, link or base; no iframe, object, embed,
  svg or math;
- no CSS ``expression()``, ``behavior``, ``-moz-binding``, ``@import``, and no
  CSS function outside a short list of harmless ones;
- ``cid:`` references pointing at ``cid_url(content_id)`` (the message's own
  parts, served by MailDesk), or removed when the message has no such part;
- no remote resource (``img src``/``srcset``, ``background``, CSS ``url()``,
  ``@import``, ``<link>``) unless ``allow_remote``; each one removed is
  counted in the ``blocked`` number returned, which drives the reading
  pane's "Remote content blocked" banner. Even with ``allow_remote``, only
  http(s) images and CSS images come through; ``<link>`` and ``@import``
  never do (nor would the reading pane's CSP let a remote stylesheet load);
- relative URLs removed (in a ``srcdoc`` frame they would point at Odoo);
- links opening in a new tab, ``rel="noopener noreferrer"``, no referrer.

``text_to_html(text)`` shows a plain-text body the same safe way: escaped,
links made clickable, quoted blocks (lines starting with ``>``) folded.
"""

from __future__ import annotations

import html as html_lib
import re
import secrets
import urllib.parse
from collections.abc import Callable

from nh3 import clean as nh3_clean

# -- what may stay -----------------------------------------------------------------

_TAGS = frozenset({
    "a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo", "big", "blockquote", "br",
    "caption", "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt",
    "em", "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup",
    "hr", "i", "img", "ins", "kbd", "li", "main", "mark", "nav", "ol", "p", "pre", "q", "rp", "rt", "rtc",
    "ruby", "s", "samp", "section", "small", "span", "strike", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
    # kept only to be judged: their content is filtered below, link is then removed
    "style", "link",
})
# Removed with everything inside them. Other unknown tags (form, input,
# button, label, …) lose the tag and keep their text.
_DROP_WITH_CONTENT = frozenset({
    "script", "title", "noscript", "template", "iframe", "frame", "frameset", "noframes", "object", "embed",
    "applet", "svg", "math", "xmp", "noembed", "plaintext", "select", "textarea", "audio", "video", "canvas",
})
_EVERYWHERE = {"style", "class", "id", "title", "lang", "dir", "align", "valign", "width", "height", "bgcolor",
               "color", "border", "background"}
_ATTRIBUTES = {
    "*": _EVERYWHERE,
    "a": {"href", "name"},
    "img": {"src", "srcset", "alt", "hspace", "vspace"},
    "font": {"face", "size"},
    "table": {"cellpadding", "cellspacing", "summary", "frame", "rules"},
    "td": {"colspan", "rowspan", "nowrap", "abbr", "scope", "headers"},
    "th": {"colspan", "rowspan", "nowrap", "abbr", "scope", "headers"},
    "col": {"span"}, "colgroup": {"span"},
    "ol": {"start", "type", "reversed"}, "ul": {"type"}, "li": {"value", "type"},
    "time": {"datetime"}, "bdo": {"dir"}, "details": {"open"},
    "link": {"href"},
}
_SET_ATTRIBUTES = {
    "a": {"target": "_blank", "referrerpolicy": "no-referrer"},
    "img": {"referrerpolicy": "no-referrer"},
}
_LINK_SCHEMES = ("http", "https", "mailto", "tel")
_IMAGE_DATA = re.compile(r"data:image/(png|gif|jpe?g|webp|bmp);base64,[a-z0-9+/=\s]*", re.IGNORECASE)
# Browsers drop these anywhere in a URL (tab, newline) or at its ends (C0 controls and space).
_URL_NOISE = re.compile(r"[\t\n\r]")
_URL_TRIM = "".join(chr(code) for code in range(0x21))

# -- CSS -----------------------------------------------------------------------------

_CSS_FUNCTIONS = frozenset({
    "rgb", "rgba", "hsl", "hsla", "hwb", "lab", "lch", "oklab", "oklch", "color-mix", "calc", "min", "max",
    "clamp", "var", "linear-gradient", "radial-gradient", "conic-gradient", "repeating-linear-gradient",
    "repeating-radial-gradient", "repeating-conic-gradient", "-webkit-linear-gradient",
    "-webkit-radial-gradient", "-moz-linear-gradient", "-o-linear-gradient", "translate", "translatex",
    "translatey", "translate3d", "rotate", "rotatex", "rotatey", "rotatez", "rotate3d", "scale", "scalex",
    "scaley", "scale3d", "skew", "skewx", "skewy", "matrix", "matrix3d", "perspective", "cubic-bezier", "steps",
    "counter", "counters", "rect", "inset", "circle", "ellipse", "polygon", "blur", "brightness", "contrast",
    "drop-shadow", "grayscale", "hue-rotate", "invert", "opacity", "saturate", "sepia", "minmax", "repeat",
    "fit-content", "not", "is", "where", "nth-child", "nth-of-type", "nth-last-child", "nth-last-of-type", "lang",
    "dir", "has", "url",
    "",  # a bare parenthesis, as in calc(1px * (2 + 3))
})
_CSS_BANNED_PROPERTIES = frozenset({"behavior", "-ms-behavior", "-moz-binding", "binding", "src"})
_CSS_BANNED_TEXT = ("\\", "<", ">", "{", "}", "@", "expression", "javascript:", "vbscript:", "&#")
_CSS_PROPERTY = re.compile(r"-?[a-z][a-z0-9-]*\Z")
# In a value, "name (" counts as a call too: whatever a browser makes of it, it stays harmless.
_CSS_FUNCTION = re.compile(r"([a-z0-9_-]*)\s*\(", re.IGNORECASE)
_SELECTOR_FUNCTION = re.compile(r"([a-z0-9_-]+)\(", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)""", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?(\*/|\Z)", re.DOTALL)
_KEEP_AT_RULES = ("media", "supports")
_STYLE_BLOCK = re.compile(r"<style>(.*?)</style>", re.DOTALL)


# The serializer of nh3 (0.3.8 here) writes "<" in attribute values as "&lt;", so "<style>" in the
# output is always an element. Should a version not do so, attributes holding "<" are dropped.
_ESCAPES_LT = "&lt;" in nh3_clean('<b title="<i>">x</b>', attributes={"b": {"title"}})


def _url_text(value: str) -> str:
    return _URL_NOISE.sub("", value).strip(_URL_TRIM)


def _scheme(url: str) -> str | None:
    """The URL's scheme, lowercased; '' for a scheme-relative //host URL; None for a relative one."""
    if url.startswith("//"):
        return ""
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", url)
    return match[1].lower() if match else None


class _Judge:
    """Decides, URL by URL, what stays; counts what it removed because it was remote."""

    def __init__(self, cid_url: Callable[[str], str | None], allow_remote: bool):
        self.cid_url = cid_url
        self.allow_remote = allow_remote
        self.blocked = 0
        self.nonce = secrets.token_hex(8)
        self.made = set()  # relative URLs we wrote (cid:), the only ones that may stay

    # one URL of something loaded with the page: an image, a background, a CSS image
    def resource(self, value: str) -> str | None:
        url = _url_text(value)
        scheme = _scheme(url)
        if scheme == "cid":
            return self._cid(url[4:])
        if scheme in ("http", "https", ""):
            if self.allow_remote:
                return "https:" + url if scheme == "" else url
            self.blocked += 1
            return None
        if scheme == "data" and _IMAGE_DATA.fullmatch(url):
            return url
        return None  # relative (would be Odoo's), data:text/html, javascript:, file:, …

    def _cid(self, reference: str) -> str | None:
        content_id = urllib.parse.unquote(reference).strip().strip("<>")
        target = self.cid_url(content_id) if content_id else None
        if not target:
            return None
        target = str(target)
        self.made.add(target)
        return target

    def link(self, value: str) -> str | None:
        url = _url_text(value)
        scheme = _scheme(url)
        if scheme in _LINK_SCHEMES:
            return url
        if scheme == "":
            return "https:" + url
        return None

    def srcset(self, value: str) -> str | None:
        candidates = [candidate.strip() for candidate in value.split(",") if candidate.strip()]
        kept, remote = [], 0
        for candidate in candidates:
            url, _space, descriptor = candidate.partition(" ")
            if not re.fullmatch(r"(\s*[0-9.]+[wx])?\s*", descriptor):
                return None
            scheme = _scheme(_url_text(url))
            if scheme in ("http", "https", "") and not self.allow_remote:
                remote += 1
                continue
            judged = self.resource(url)
            if judged is None or "," in judged or " " in judged:
                return None
            kept.append(f"{judged} {descriptor.strip()}".strip())
        if remote:
            self.blocked += 1  # one srcset, one resource the browser would have fetched
        return ", ".join(kept) or None

    def relative_allowed(self, url: str) -> str | None:
        """nh3's last word on relative URLs: only those we wrote ourselves."""
        return url if url in self.made else None

    # nh3 calls this for every attribute of a tag it keeps
    def attribute(self, tag: str, name: str, value: str) -> str | None:
        if tag not in _TAGS:
            return None  # nh3 removes the element anyway; nothing of it is counted or kept
        if tag == "link":
            if name == "href" and not self.allow_remote and _scheme(_url_text(value)) in ("http", "https", ""):
                self.blocked += 1
            return None
        if tag == "style" or ("<" in value and not _ESCAPES_LT):
            return None
        if name == "href":
            return self.link(value)
        if name == "src":
            return self.resource(value)
        if name == "srcset":
            return self.srcset(value)
        if name == "background":
            return self.resource(value)
        if name == "style":
            return _css_declarations(value, self) or None
        return value


# -- CSS -------------------------------------------------------------------------


def _css_value(value: str, judge: _Judge) -> str | None:
    """A declaration's value, its url()s judged; None when the declaration must go.

    A remote image that is not allowed becomes ``none`` (and is counted), so
    ``background: #fff url(…)`` keeps its colour.
    """
    lowered = value.lower()
    if any(text in lowered for text in _CSS_BANNED_TEXT) or not _balanced(value):
        return None
    if any(name.lower() not in _CSS_FUNCTIONS for name in _CSS_FUNCTION.findall(value)):
        return None
    if "url(" not in lowered:
        return value
    written = []

    def replace(match):
        target = judge.resource(next(group for group in match.groups() if group is not None))
        if target is None or any(char in target for char in "\"'\\()\n<>"):
            return "none"
        written.append(target)
        return f'url("{target}")'

    judged = _CSS_URL.sub(replace, value)
    if judged.lower().count("url(") != len(written):
        return None  # a url( the pattern did not understand
    return judged


def _balanced(value: str) -> bool:
    depth = 0
    for char in value:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _split_top(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside strings and parentheses."""
    parts, current, depth, quote = [], [], 0, None
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            continue
        if char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _css_declarations(text: str, judge: _Judge) -> str:
    """A ``style`` attribute (or a rule's block): declarations that are safe, the others dropped."""
    text = _CSS_COMMENT.sub("", text)
    kept = []
    for declaration in _split_top(text, ";"):
        name, colon, value = declaration.partition(":")
        name = name.strip().lower()
        if not colon or not _CSS_PROPERTY.match(name) or name in _CSS_BANNED_PROPERTIES:
            continue
        if "\\" in declaration or "\n" in value.strip():
            continue
        judged = _css_value(value.strip(), judge)
        if judged:
            kept.append(f"{name}: {judged}")
    return "; ".join(kept)


def _block_end(text: str, start: int) -> int:
    """Index just past the ``}`` closing the block whose ``{`` is at ``start``; len(text) when unclosed."""
    depth, quote = 0, None
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


def _count_remote_urls(text: str, judge: _Judge) -> None:
    """A dropped at-rule (@import, @font-face) that would have fetched something: counted."""
    if judge.allow_remote:
        return
    urls = [next(group for group in match.groups() if group is not None) for match in _CSS_URL.finditer(text)]
    urls += re.findall(r"""@import\s+["']([^"']*)["']""", text, re.IGNORECASE)
    judge.blocked += sum(1 for url in urls if _scheme(_url_text(url)) in ("http", "https", ""))


def _stylesheet(text: str, judge: _Judge, depth: int = 0) -> str:
    """A ``<style>`` block: rules with safe declarations, @media / @supports kept, other at-rules dropped."""
    text = _CSS_COMMENT.sub("", text).replace("<!--", "").replace("-->", "")
    out, index = [], 0
    while index < len(text):
        brace = text.find("{", index)
        semicolon = text.find(";", index)
        head_end = brace if brace != -1 else len(text)
        prelude = text[index:head_end].strip()
        if prelude.startswith("@") and semicolon != -1 and semicolon < head_end:
            _count_remote_urls(text[index:semicolon], judge)  # @import, @charset, @namespace
            index = semicolon + 1
            continue
        if brace == -1:
            break
        end = _block_end(text, brace)
        block = text[brace + 1:end - 1] if end <= len(text) and text[end - 1:end] == "}" else text[brace + 1:]
        if prelude.startswith("@"):
            keyword = re.match(r"@([a-z-]+)", prelude.lower())
            if keyword and keyword[1] in _KEEP_AT_RULES and depth < 4 and _safe_prelude(prelude[1:]):
                inner = _stylesheet(block, judge, depth + 1)
                if inner:
                    out.append(f"{prelude}{{{inner}}}")
            else:
                _count_remote_urls(block + prelude, judge)
        elif _safe_prelude(prelude):
            declarations = _css_declarations(block, judge)
            if declarations:
                out.append(f"{prelude}{{{declarations}}}")
        index = end
    return "\n".join(out)


def _safe_prelude(prelude: str) -> bool:
    lowered = prelude.lower()
    banned = ("\\", "<", "@", "url(", "expression", "{", "}", ";")
    return bool(prelude) and not any(text in lowered for text in banned) \
        and all(name.lower() in _CSS_FUNCTIONS for name in _SELECTOR_FUNCTION.findall(prelude))


# -- the entry points ------------------------------------------------------------------


def safe_html(html: str | None, cid_url: Callable[[str], str | None] = lambda _cid: None,
              allow_remote: bool = False) -> tuple[str, int]:
    """(HTML fit to show in the reading pane's sandboxed frame, number of remote resources removed)."""
    if not html:
        return "", 0
    judge = _Judge(cid_url, allow_remote)
    cleaned = nh3_clean(
        html,
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=judge.attribute,
        strip_comments=True,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={tag: dict(values) for tag, values in _SET_ATTRIBUTES.items()},
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        url_relative=judge.relative_allowed,
    )
    # <link> was kept only so that its href could be counted: it goes now. The
    # serializer escapes "<" in text and attribute values, so "<link>" and
    # "<style>" here are elements, never text the sender wrote.
    cleaned = re.sub(r"<link(?:\s[^>]*)?>", "", cleaned)
    cleaned = _STYLE_BLOCK.sub(lambda match: _style_element(match[1], judge), cleaned)
    return cleaned, judge.blocked


def _style_element(css: str, judge: _Judge) -> str:
    sheet = _stylesheet(css, judge)
    return f"<style>{sheet}</style>" if sheet and "</" not in sheet and "<" not in sheet else ""


_LINKABLE = re.compile(
    r"(?P<url>(?:https?://|www\.)[^\s<>\"'()\[\]{}]+[^\s<>\"'()\[\]{}.,;:!?])"
    r"|(?P<mail>mailto:[^\s<>\"']+|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})"
)


def _linkify(line: str) -> str:
    out, last = [], 0
    for match in _LINKABLE.finditer(line):
        out.append(html_lib.escape(line[last:match.start()]))
        text = match[0]
        if match["url"]:
            href = text if text.lower().startswith("http") else "https://" + text
        else:
            href = text if text.lower().startswith("mailto:") else "mailto:" + text
        out.append(f'<a href="{html_lib.escape(href)}" target="_blank" rel="noopener noreferrer" '
                   f'referrerpolicy="no-referrer">{html_lib.escape(text)}</a>')
        last = match.end()
    out.append(html_lib.escape(line[last:]))
    return "".join(out)


def text_to_html(text: str | None) -> str:
    """A plain-text body as safe HTML: escaped, links clickable, quoted blocks folded in <details>."""
    if not text:
        return ""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out, quoted = [], []

    def flush_quote():
        if quoted:
            summary = f"{len(quoted)} quoted line{'s' if len(quoted) > 1 else ''}"
            body = "\n".join(_linkify(line) for line in quoted)
            out.append(f'<details class="o_maildesk_quote"><summary>{summary}</summary>'
                       f"<blockquote>{body}</blockquote></details>")
            quoted.clear()

    for line in lines:
        if line.lstrip().startswith(">"):
            quoted.append(line)
            continue
        flush_quote()
        out.append(_linkify(line) + "\n")
    flush_quote()
    style = "white-space: pre-wrap; word-wrap: break-word"
    return f'<div class="o_maildesk_text" style="{style}">' + "".join(out) + "</div>"
