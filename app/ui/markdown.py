"""Markdown to Qt rich-text HTML for model output.

Model output is untrusted, so the renderer is deliberately narrow:
- raw HTML in the input is escaped (markdown-it ``html=False``), never interpreted;
- images are never emitted as ``<img>``: a markdown image is the classic way to make a viewer
  fetch ``https://attacker/?q=<secret>``, so they become text showing the alt text and URL;
- links survive only for http, https and mailto; anything else (javascript:, file:, data:)
  is left as the literal text the model wrote.

The output uses only the HTML/CSS subset Qt's rich-text engine understands (inline styles,
table attributes), because QTextBrowser ignores the rest silently. Partial input from a
streaming reply (an unclosed fence, half a table) is valid markdown, so every prefix renders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.lexers.special import TextLexer
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound

COPY_SCHEME = "hearth-copy"

_SAFE_LINK = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)
_LANG_NAME = re.compile(r"^[\w+#.-]{1,32}$")


@dataclass(frozen=True)
class Rendered:
    html: str
    code_blocks: tuple[str, ...]


@dataclass(frozen=True)
class _Theme:
    code_style: str
    code_bg: str
    code_fg: str
    header_bg: str
    border: str
    muted: str
    inline_code_bg: str
    inline_code_fg: str
    link: str
    table_header_bg: str


_LIGHT = _Theme(
    code_style="default",
    code_bg="#f6f8fa",
    code_fg="#1f2328",
    header_bg="#eaeef2",
    border="#d0d7de",
    muted="#59636e",
    inline_code_bg="#eff1f3",
    inline_code_fg="#1f2328",
    link="#0969da",
    table_header_bg="#f6f8fa",
)

_DARK = _Theme(
    code_style="github-dark",
    code_bg="#161b22",
    code_fg="#e6edf3",
    header_bg="#21262d",
    border="#3d444d",
    muted="#9198a1",
    inline_code_bg="#2d333b",
    inline_code_fg="#e6edf3",
    link="#4493f8",
    table_header_bg="#21262d",
)


class _SafeMarkdownIt(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802 - markdown-it's hook name
        # Applied to links and images alike; a rejected destination stays literal text.
        return bool(_SAFE_LINK.match(url.strip()))


@lru_cache(maxsize=2)
def _formatter(style_name: str) -> HtmlFormatter[str]:
    try:
        style = get_style_by_name(style_name)
    except ClassNotFound:
        style = get_style_by_name("monokai")
    return HtmlFormatter(noclasses=True, nowrap=True, style=style)


@lru_cache(maxsize=64)
def _lexer(lang: str) -> Lexer:
    # No guess_lexer: guessing runs every lexer's analyser and costs tens of milliseconds.
    if lang:
        try:
            return get_lexer_by_name(lang, stripnl=False, ensurenl=False)
        except ClassNotFound:
            pass
    return TextLexer(stripnl=False, ensurenl=False)


@lru_cache(maxsize=256)
def _highlighted(code: str, lang: str, style_name: str) -> str:
    # A streaming reply is re-rendered for every chunk; caching keeps finished blocks free, so
    # only the block still being written is lexed again (lexing dominates the render cost).
    body = highlight(code, _lexer(lang), _formatter(style_name))
    return body[:-1] if body.endswith("\n") else body


def _theme(env: EnvType) -> _Theme:
    return _DARK if env.get("dark") else _LIGHT


def _code_block(code: str, info: str, env: EnvType) -> str:
    theme = _theme(env)
    blocks: list[str] = env["code_blocks"]
    block_id = f"{env['copy_prefix']}{len(blocks)}"
    blocks.append(code)
    lang = info.split(maxsplit=1)[0] if info.strip() else ""
    label = lang if _LANG_NAME.match(lang) else "code"
    body = _highlighted(code, lang.lower(), theme.code_style)
    # A table is the only box Qt gives a background, border and padding to as one unit.
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" border="1" '
        f'style="border-collapse:collapse; border-color:{theme.border}; border-style:solid; '
        f'margin-top:6px; margin-bottom:6px;">'
        f'<tr><td style="background-color:{theme.header_bg}; color:{theme.muted}; font-size:small;">'
        f'<table width="100%" cellspacing="0" cellpadding="0" border="0"><tr>'
        f'<td><span style="color:{theme.muted}">{escape(label)}</span></td>'
        f'<td align="right"><a href="{COPY_SCHEME}:{escape(block_id, quote=True)}" '
        f'style="color:{theme.link}; text-decoration:none;">Copy</a></td>'
        f"</tr></table></td></tr>"
        f'<tr><td style="background-color:{theme.code_bg};">'
        f'<pre style="color:{theme.code_fg}; margin:0px;">{body}</pre>'
        f"</td></tr></table>\n"
    )


def _fence(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    return _code_block(token.content, token.info, env)


def _indented_code(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    return _code_block(tokens[idx].content, "", env)


def _inline_code(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    theme = _theme(env)
    return (
        f'<code style="background-color:{theme.inline_code_bg}; color:{theme.inline_code_fg};">'
        f"{escape(tokens[idx].content)}</code>"
    )


def _image(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "")
    theme = _theme(env)
    # Text only, not even a link: an <img> loads with no action from the user, which is what
    # makes it an exfiltration channel; the URL stays visible so nothing is hidden either.
    return f'<span style="color:{theme.muted};">[image: {escape(alt)}] ({escape(src)})</span>'


def _link_open(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    href = str(tokens[idx].attrGet("href") or "")
    return f'<a href="{escape(href, quote=True)}" style="color:{_theme(env).link};">'


def _table_open(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    theme = _theme(env)
    return (
        f'<table border="1" cellspacing="0" cellpadding="5" '
        f'style="border-collapse:collapse; border-color:{theme.border}; border-style:solid; '
        f'margin-top:6px; margin-bottom:6px;">\n'
    )


def _th_open(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    align = _cell_align(tokens[idx])
    return f'<th{align} style="background-color:{_theme(env).table_header_bg};">'


def _td_open(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    return f"<td{_cell_align(tokens[idx])}>"


def _cell_align(token: Token) -> str:
    style = str(token.attrGet("style") or "")
    for align in ("left", "center", "right"):
        if style == f"text-align:{align}":
            return f' align="{align}"'
    return ""


def _blockquote_open(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    return f'<blockquote style="color:{_theme(env).muted}; margin-left:16px; margin-right:0px;">\n'


def _hr(self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    return "<hr />\n"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = _SafeMarkdownIt("commonmark", {"html": False, "xhtmlOut": False})
    md.enable(["table", "strikethrough"])
    rules = {
        "fence": _fence,
        "code_block": _indented_code,
        "code_inline": _inline_code,
        "image": _image,
        "link_open": _link_open,
        "table_open": _table_open,
        "th_open": _th_open,
        "td_open": _td_open,
        "blockquote_open": _blockquote_open,
        "hr": _hr,
    }
    for name, rule in rules.items():
        md.add_render_rule(name, rule)
    return md


def render_markdown(text: str, *, dark: bool = False, copy_prefix: str = "") -> Rendered:
    """Render untrusted markdown to Qt rich-text HTML plus the raw code of each code block.

    Copy links are ``hearth-copy:{copy_prefix}{n}`` where n indexes ``code_blocks``; the prefix
    lets a view that shows several messages tell their blocks apart.
    """
    blocks: list[str] = []
    env: EnvType = {"dark": dark, "copy_prefix": copy_prefix, "code_blocks": blocks}
    body = _parser().render(text, env)
    return Rendered(html=body, code_blocks=tuple(blocks))
