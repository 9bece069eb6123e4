"""Item bodies <-> Google descriptions.

Google descriptions are plain text (Google's web editor adds a little HTML). An HTML body
becomes text a person can read in any client: paragraphs stay paragraphs, lines stay
lines, list items keep a dash and a link keeps its address next to its words.
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/body
"""

from __future__ import annotations

import re
from typing import Final

import lxml.html
from lxml import etree

#: Elements that end a line.
_LINES: Final = frozenset(
    {"div", "li", "tr", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
    | {"section", "article", "header", "footer", "address", "center", "caption"}
)
#: Elements that stand apart with a blank line around them.
_PARAGRAPHS: Final = frozenset({"p", "blockquote", "pre", "hr"})
_SKIPPED: Final = frozenset({"head", "script", "style", "title", "meta", "link", "xml"})
#: Tags of the rich text Google's editor writes into descriptions.
_GOOGLE_RICH_TEXT: Final = frozenset(
    {"a", "b", "i", "u", "br", "p", "div", "span", "ul", "ol", "li", "strong", "em", "html"}
)
_SPACES: Final = re.compile(r"[ \t\r\n\f\v\xa0]+")
_BLANK_LINES: Final = re.compile(r"\n{3,}")


class _Text:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.newlines = 0  # newlines at the end of what is written so far
        self.empty = True

    def write(self, text: str, *, pre: bool = False) -> None:
        if not pre and (self.empty or self.newlines):
            text = text.lstrip(" ")  # collapsed HTML whitespace at the start of a line
        if not text:
            return
        self.parts.append(text)
        self.empty = False
        stripped = text.rstrip("\n")
        self.newlines = len(text) - len(stripped) + (self.newlines if not stripped else 0)

    def brk(self, newlines: int) -> None:
        """End the line (1) or the paragraph (2), unless that is done already."""
        if not self.empty and self.newlines < newlines:
            self.write("\n" * (newlines - self.newlines))

    def text(self) -> str:
        lines = (line.rstrip(" ") for line in "".join(self.parts).split("\n"))
        return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


def html_to_text(html: str) -> str:
    """Readable text for an HTML body (lxml.html parses; this walks the tree)."""
    if not html.strip():
        return ""
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return html
    out = _Text()
    _walk(root, out, pre=False)
    return out.text()


def _walk(elem: etree._Element, out: _Text, *, pre: bool) -> None:
    raw = elem.tag.lower() if isinstance(elem.tag, str) else ""
    if raw in _SKIPPED or not raw:  # also comments and processing instructions
        _inline(out, elem.tail, pre)
        return
    pre = pre or raw == "pre"
    # Outlook writes each line as <p class=MsoNormal> with no margins (a line, its empty
    # ones the blank lines) and decorates with namespaced tags such as <o:p> (inline).
    if raw == "p" and "msonormal" in (elem.get("class") or "").lower():
        kind = 1
    elif raw in _PARAGRAPHS:
        kind = 2
    elif raw in _LINES:
        kind = 1
    else:
        kind = 0
    out.brk(kind)
    if raw == "li":
        out.write("- ")
    _inline(out, elem.text, pre)
    for child in elem:
        _walk(child, out, pre=pre)
    if raw == "br":
        out.write("\n")
    elif raw == "a":
        href = (elem.get("href") or "").strip()
        words = _SPACES.sub(" ", "".join(str(t) for t in elem.itertext())).strip()
        if href and not href.startswith("#") and href.removeprefix("mailto:") != words:
            out.write(f" <{href}>" if words else href)
    if kind == 1 and out.newlines == 0:
        out.write("\n")
    elif kind == 1 and out.empty is False and raw == "p":
        out.write("\n")  # an empty Outlook line is a blank line
    out.brk(kind)
    _inline(out, elem.tail, pre)


def _inline(out: _Text, text: str | None, pre: bool) -> None:
    if text:
        out.write(text if pre else _SPACES.sub(" ", text), pre=pre)


def looks_like_html(text: str) -> bool:
    """Whether a Google description carries the rich text Google's editor writes."""
    if "<" not in text:
        return False
    try:
        fragments = lxml.html.fragments_fromstring(text)
    except (etree.ParserError, ValueError):
        return False
    for fragment in fragments:
        if isinstance(fragment, str):
            continue
        for elem in fragment.iter():
            if isinstance(elem.tag, str) and elem.tag.lower() in _GOOGLE_RICH_TEXT:
                return True
    return False
