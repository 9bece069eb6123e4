"""HTML bodies as readable text, and telling Google's rich text from plain text
(mapping/body.py)."""

from __future__ import annotations

import pytest

from mapping.body import html_to_text, looks_like_html

HTML = [
    # paragraphs are separated by a blank line; inline markup goes
    ("<p>Hello <b>world</b></p><p>Second</p>", "Hello world\n\nSecond"),
    # a full document: head, style and script are not text
    (
        "<html><head><title>t</title><style>p {color: red}</style></head>"
        "<body><script>alert(1)</script><div>Only this</div></body></html>",
        "Only this",
    ),
    # links keep their address, unless the words are the address
    (
        '<p>See <a href="https://x.example/doc">the doc</a>.</p>',
        "See the doc <https://x.example/doc>.",
    ),
    ('<a href="https://x.example/">https://x.example/</a>', "https://x.example/"),
    ('<a href="mailto:a@b.example">a@b.example</a>', "a@b.example"),
    ('<a href="#top">Top</a>', "Top"),
    # lines: <br>, divs, list items with a dash
    ("one<br>two<br/>three", "one\ntwo\nthree"),
    ("<div>a</div><div>b</div>", "a\nb"),
    ("<ul><li>first</li><li>second</li></ul><p>after</p>", "- first\n- second\n\nafter"),
    # HTML whitespace collapses, except in <pre>
    ("<p>  spread\n   over\tlines  </p>", "spread over lines"),
    ("<pre>a  b\n  c</pre>", "a  b\n  c"),
    # entities and non-breaking spaces
    ("<p>R&amp;D&nbsp;&lt;team&gt;</p>", "R&D <team>"),
    # Outlook: each line is a MsoNormal paragraph, empty ones are blank lines
    (
        "<div class=WordSection1><p class=MsoNormal>Line one<o:p></o:p></p>"
        "<p class=MsoNormal>Line two<o:p></o:p></p>"
        "<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
        "<p class=MsoNormal>After a blank<o:p></o:p></p></div>",
        "Line one\nLine two\n\nAfter a blank",
    ),
    # never more than one blank line
    ("<p>a</p><p></p><p></p><p>b</p>", "a\n\nb"),
    # empty
    ("", ""),
    ("<html><body></body></html>", ""),
]


@pytest.mark.parametrize(("html", "text"), HTML)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("text", "rich"),
    [
        # what Google's editor writes
        ("<b>Bold</b> and <i>italic</i>", True),
        ('Join <a href="https://meet.example/x">here</a>', True),
        ("line<br>line", True),
        ("<ul><li>x</li></ul>", True),
        # plain text that merely has angle brackets
        ("a < b and c > d", False),
        ("Reply to <someone@example.com>", False),
        ("no markup at all", False),
    ],
)
def test_looks_like_html(text: str, rich: bool) -> None:
    assert looks_like_html(text) is rich
