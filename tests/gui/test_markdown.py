"""Markdown rendering of untrusted model output: structure, highlighting, and what must never render."""

from __future__ import annotations

import re
import time

import pytest
from pytestqt.qtbot import QtBot

from app.ui.markdown import Rendered, render_markdown

SAMPLE = """# Plan

Some *emphasis*, `inline code` and ~~gone~~.

## Steps

- first
- second
  1. nested

| name | size |
|:-----|-----:|
| a    | 1    |
| b    | 22   |

```python
def greet(name: str) -> str:
    return f"hi {name}"
```

> quoted

    indented = True
"""


def test_headings_lists_emphasis() -> None:
    html = render_markdown(SAMPLE).html
    assert "<h1>Plan</h1>" in html
    assert "<h2>Steps</h2>" in html
    assert "<ul>" in html and "<ol>" in html
    assert "<li>first</li>" in html
    assert "<em>emphasis</em>" in html
    assert "<s>gone</s>" in html


def test_table_has_qt_friendly_borders_and_alignment() -> None:
    html = render_markdown(SAMPLE).html
    assert '<table border="1" cellspacing="0" cellpadding="5"' in html
    assert "<th" in html and ">name</th>" in html
    assert '<td align="right">22</td>' in html


def test_code_blocks_are_highlighted_and_copyable() -> None:
    rendered = render_markdown(SAMPLE)
    assert rendered.code_blocks == (
        'def greet(name: str) -> str:\n    return f"hi {name}"\n',
        "indented = True\n",
    )
    assert 'href="hearth-copy:0"' in rendered.html
    assert 'href="hearth-copy:1"' in rendered.html
    assert ">python<" in rendered.html
    # pygments inline styles: keywords get a colour of their own
    assert len(re.findall(r'<span style="[^"]*color: ?#[0-9a-fA-F]{3,6}', rendered.html)) >= 3
    assert "<pre" in rendered.html


def test_copy_prefix_namespaces_ids() -> None:
    rendered = render_markdown("```\na\n```\n\n```sh\nb\n```\n", copy_prefix="m7-")
    assert rendered.code_blocks == ("a\n", "b\n")
    assert 'href="hearth-copy:m7-0"' in rendered.html
    assert 'href="hearth-copy:m7-1"' in rendered.html


def test_unknown_language_and_hostile_info_string() -> None:
    rendered = render_markdown('```no-such-lang"><b>x\n<i>code</i>\n```\n')
    assert rendered.code_blocks == ("<i>code</i>\n",)
    assert "<i>" not in rendered.html and "<b>" not in rendered.html
    assert "&lt;i&gt;code&lt;/i&gt;" in rendered.html


def test_dark_and_light_differ() -> None:
    light = render_markdown(SAMPLE).html
    dark = render_markdown(SAMPLE, dark=True).html
    assert light != dark
    assert "#161b22" in dark and "#161b22" not in light


def test_raw_html_is_escaped_not_rendered() -> None:
    text = '<script>alert(1)</script>\n\nhi <img src="http://evil/x.png"> <b onclick="x">bold</b>\n\n<div>block</div>'
    html = render_markdown(text).html
    for tag in ("<script", "<img", "<b ", "<div"):
        assert tag not in html
    assert "&lt;script&gt;" in html
    assert "&lt;img src=&quot;http://evil/x.png&quot;&gt;" in html


def test_images_become_text() -> None:
    text = "![a cat](https://evil.test/c.png?q=secret)\n\n![ref img][r]\n\n[r]: http://evil.test/r.png\n"
    html = render_markdown(text).html
    assert "<img" not in html
    assert "[image: a cat]" in html
    assert "https://evil.test/c.png?q=secret" in html
    assert "[image: ref img]" in html and "http://evil.test/r.png" in html
    assert "href" not in html


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "file:///etc/passwd",
        "data:text/html,hi",
        "vbscript:x",
        "relative/page",
    ],
)
def test_unsafe_link_schemes_stay_text(link: str) -> None:
    html = render_markdown(f"[click]({link}) and <{link}>").html
    assert "<a " not in html
    assert "click" in html


def test_safe_links_stay_links() -> None:
    html = render_markdown("[docs](https://example.com/a?b=1&c=2) <http://x.test/> [mail](mailto:me@x.test)").html
    assert '<a href="https://example.com/a?b=1&amp;c=2"' in html
    assert '<a href="http://x.test/"' in html
    assert '<a href="mailto:me@x.test"' in html


def test_streaming_prefixes_never_fail() -> None:
    for end in range(len(SAMPLE) + 1):
        assert isinstance(render_markdown(SAMPLE[:end]), Rendered)


def test_unclosed_fence_and_half_table() -> None:
    rendered = render_markdown("Intro\n\n```python\nfor i in range(3):\n    print(i)\n")
    assert rendered.code_blocks == ("for i in range(3):\n    print(i)\n",)
    assert "hearth-copy:0" in rendered.html
    half = render_markdown("| a | b |\n|---|-")
    assert "a" in half.html


CODE = '''import json
from pathlib import Path


def load_counts(path: Path) -> dict[str, int]:
    """Read a JSON object of counts, skipping values that are not numbers."""
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    return {key: int(value) for key, value in data.items() if str(value).isdigit()}
'''

PROSE = (
    "This reads the file once and keeps only the numeric entries, so a stray string in the data "
    "does not stop the whole load. See [the json docs](https://docs.python.org/3/library/json.html) "
    "for the details of `json.load`, and note that **keys stay strings**.\n\n"
)


def _reply(tag: int) -> str:
    """A typical 2 KB answer: prose, a list, a table and a code block (unique, so never cached)."""
    table = "| key | kept |\n|-----|-----:|\n| a | yes |\n| b | no |\n"
    steps = "- open the file\n- parse it\n- filter the values\n"
    text = f"## Loading counts\n\n{PROSE}{steps}\n{table}\n```python\n# run {tag}\n{CODE}```\n\n{PROSE * 6}"
    return text[:2048]


def test_render_is_fast() -> None:
    assert len(_reply(0)) == 2048
    render_markdown(_reply(0))  # warm the parser, lexer and formatter caches
    best = min(_timed(_reply(tag)) for tag in range(1, 16))
    assert best < 0.005, f"best 2 KB render took {best * 1000:.2f} ms"


def test_streaming_rerender_reuses_finished_blocks() -> None:
    # While a reply streams, the whole text is re-rendered per chunk; finished blocks are cached.
    big_code = "\n".join(f"    total += value_{i} * {i}  # step {i}" for i in range(40))
    head = f"```python\ndef f():\n{big_code}\n```\n\n"
    render_markdown(head)
    best = min(_timed(head + PROSE[:n]) for n in range(20, 200, 12))
    assert best < 0.005, f"best streaming re-render took {best * 1000:.2f} ms"


def _timed(text: str) -> float:
    start = time.perf_counter()
    render_markdown(text)
    return time.perf_counter() - start


def test_qt_reads_structure(qtbot: QtBot) -> None:
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setHtml(render_markdown(SAMPLE).html)
    plain = doc.toPlainText()
    assert "def greet(name: str) -> str:" in plain
    assert "Copy" in plain and "python" in plain
    frames = doc.rootFrame().childFrames()
    assert len(frames) >= 3  # the data table and two code boxes
