"""What a written reply sounds like: Markdown turned into sentences a voice can read.

Replies are Markdown. Read aloud, markup must disappear and some things must be said differently:

* a fenced code block becomes "Here is a code block." — its contents are never read;
* inline code becomes its text, a link `[text](url)` its text, a bare URL "a link to example.com";
* headings, bullets, numbers of ordered lists, quote markers, emphasis and table borders vanish;
  a table row is read as its cells separated by commas;
* emoji are dropped; "e.g.", "i.e.", "etc." and "vs." are read as words.

`SentenceStream` does this while the reply is still arriving, so speech can start long before the
reply is complete. `feed(delta)` returns the sentences that the text so far completes. A sentence
ends at `.`, `!`, `?` or `:` followed by white space, or at the end of a line — but not after "e.g.",
"Dr.", "U.S.", an initial such as "J.", inside "3.14", nor before a lower-case word. Nothing inside
an unfinished code block, code span or link is spoken until it is finished. To make the first words
come sooner, a long first sentence (more than 12 words) is cut after its first comma that follows at
least 4 words. The sentences do not depend on how the reply was cut into deltas: one delta or one
character at a time give the same result. Every sentence returned holds words.

`speakable(markdown)` is the same conversion for a complete text, as one string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

CODE_BLOCK = "Here is a code block."
EARLY_MIN_WORDS = 8  # a first sentence longer than this may be cut at a comma …
EARLY_COMMA_AFTER = 3  # … that follows at least this many words

ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs gen col lt sgt capt rev hon fig approx dept est univ ave blvd no".split()
)
# Sentence-ending punctuation, with any closing quotes, brackets or emphasis right after it.
_BOUNDARY = re.compile(r"[.!?:…]+[*_\"'”’)\]]*")
_ACRONYM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S, e.g, i.e, a.m (the final "." follows)
_INITIAL = re.compile(r"^[A-Z]$")
_PREFIX = re.compile(r"[ \t]*(?:>[ \t]?)*[ \t]*(?:#{1,6}[ \t]+|[-*+][ \t]+|\d{1,9}[.)][ \t]+)?")
_FIRST_TOKEN = re.compile(r"\S+\s")  # a whole first word after the markers: the markers are known
_FENCE = re.compile(r"[ \t]*(?:>[ \t]?)*[ \t]*(`{3,}|~{3,})(.*)$")
_TABLE_SEPARATOR = re.compile(r"^[\s|:\-]+$")
_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_LINK_PREFIX = re.compile(r"!?\[[^\]\n]*(?:\](?:\([^)\n]*)?)?$")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^\s<>]+|www\.[^\s<>]+|[^\s<>@]+@[^\s<>@]+)>", re.IGNORECASE)
_TAG_PREFIX = re.compile(r"</?[A-Za-z][^<>\n]*$")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>]+", re.IGNORECASE)
_URL_TRAILER = ".,;:!?)]}'\"”’*_"
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
_CHECKBOX = re.compile(r"^\s*\[[ xX]\]\s+")
_EMPHASIS_OPEN = re.compile(r"(?:(?<=^)|(?<=[\s(\[\"'“‘]))(?:\*{1,3}|_{1,3}|~~)(?=\S)")
_EMPHASIS_CLOSE = re.compile(r"(?<=\S)(?:\*{1,3}|_{1,3}|~~)(?=$|[\s.,;:!?)\]\"'”’…])")
_WORD_UNDERSCORE = re.compile(r"(?<=\w)_+(?=\w)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U0001fb00-\U0001fbff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff"
    "\ufe0e\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SAID_AS = (
    (re.compile(r"\be\.\s?g\.(?=\W|$)", re.IGNORECASE), "for example"),
    (re.compile(r"\bi\.\s?e\.(?=\W|$)", re.IGNORECASE), "that is"),
    (re.compile(r"\betc\.(?=\W|$)", re.IGNORECASE), "et cetera"),
    (re.compile(r"\bvs\.(?=\W|$)", re.IGNORECASE), "versus"),
    (re.compile(r"\bapprox\.(?=\W|$)", re.IGNORECASE), "approximately"),
)
_TERMINAL = re.compile(r"[.!?:;,…][\"'”’)\]]*$")
_WORD = re.compile(r"\w+")


def speakable(markdown: str) -> str:
    """The complete reply as one string to read aloud."""
    stream = SentenceStream(early_first=False)
    return " ".join([*stream.feed(markdown), *stream.flush()])


class SentenceStream:
    """Speakable sentences from a reply that arrives a few characters at a time."""

    def __init__(self, *, early_first: bool = True) -> None:
        self._early_first = early_first
        self._reset()

    def _reset(self) -> None:
        self._buf = ""
        self._at_line_start = True
        self._fence: str | None = None  # the opening marker while inside a fenced code block
        self._emitted = False

    def feed(self, delta: str) -> list[str]:
        """Sentences completed by `delta` (often none)."""
        self._buf += delta.replace("\r\n", "\n").replace("\r", "\n")
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """Everything still held back, at the end of the reply; the stream is then ready for the next one."""
        out = self._drain(final=True)
        self._reset()
        return out

    # ------------------------------------------------------------ the line machine

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while self._buf or (final and self._fence is not None):
            newline = self._buf.find("\n")
            complete = newline >= 0 or final
            line = self._buf[:newline] if newline >= 0 else self._buf
            rest = self._buf[newline + 1 :] if newline >= 0 else ""
            if self._fence is not None:
                if not complete:
                    break
                if newline < 0 or _closes_fence(line, self._fence):
                    self._fence = None
                    self._say(out, CODE_BLOCK)
                self._buf = rest
                continue
            if self._at_line_start:
                stripped = line.lstrip(" \t>")
                if not complete:
                    if stripped.startswith(("|", "```", "~~~")) or stripped in ("`", "``", "~", "~~"):
                        break  # a table row or a code fence: decided when the line is complete
                    marker = _PREFIX.match(line)
                    if not _FIRST_TOKEN.match(line, marker.end() if marker else 0):
                        break  # the list, quote or heading marker may not be complete yet
                fence = _FENCE.match(line)
                if complete and fence and "`" not in fence.group(2):
                    self._fence = fence.group(1)
                    self._buf = rest
                    continue
                if complete and stripped.startswith("|"):
                    self._say(out, _table_row(stripped))
                    self._buf = rest
                    continue
                prefix = _PREFIX.match(line)
                cut = prefix.end() if prefix else 0
                self._buf = self._buf[cut:]
                self._at_line_start = False
                continue
            pieces, consumed = _split_line(line, complete)
            for piece in pieces:
                self._say_first_early(out, piece)
            if complete:
                self._buf = rest
                self._at_line_start = True
                continue
            self._buf = self._buf[consumed:]
            if not self._emitted and self._early_first:
                self._early_from_pending(out)
            break
        return out

    def _say(self, out: list[str], raw: str, *, spoken: str | None = None) -> None:
        text = spoken if spoken is not None else _speak_piece(raw)
        if text:
            out.append(text)
            self._emitted = True

    def _say_first_early(self, out: list[str], piece: str) -> None:
        """Say a finished sentence; the first one of a reply may be cut at an early comma."""
        if not self._emitted and self._early_first:
            comma = _early_comma(piece)
            if comma is not None:
                self._say(out, piece[: comma + 1])
                self._say(out, piece[comma + 1 :])
                return
        self._say(out, piece)

    def _early_from_pending(self, out: list[str]) -> None:
        """Cut the first sentence at an early comma before it is complete, when it is long enough to know."""
        line = self._buf
        known = _known_prefix(line)
        comma = _early_comma(line[:known])
        if comma is None:
            return
        self._say(out, line[: comma + 1])
        skip = comma + 1
        while skip < len(line) and line[skip] in " \t":
            skip += 1
        self._buf = line[skip:]


# ------------------------------------------------------------ sentence boundaries in one line


def _scan(line: str, complete: bool) -> tuple[list[tuple[int, int]], int]:
    """Spans of code and links (no sentence ends inside them) and where undecided text begins.

    In an incomplete line, an unclosed code span, link or tag may still close: the text from its
    start on is undecided. In a complete line an unclosed marker is just a character.
    """
    protected: list[tuple[int, int]] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch == "`":
            run = len(line) - i - len(line[i:].lstrip("`"))
            close = _find_run(line, "`" * run, i + run)
            if close >= 0:
                protected.append((i, close + run))
                i = close + run
                continue
            if not complete:
                return protected, i
            i += run
            continue
        if ch == "[" or (ch == "!" and line.startswith("[", i + 1)):
            link = _LINK.match(line, i)
            if link:
                protected.append(link.span())
                i = link.end()
                continue
            if not complete and _LINK_PREFIX.match(line, i):
                return protected, i
        elif ch == "<":
            auto = _AUTOLINK.match(line, i)
            if auto:
                protected.append(auto.span())
                i = auto.end()
                continue
            if not complete and _TAG_PREFIX.match(line, i):
                return protected, i
        i += 1
    return protected, n


def _find_run(line: str, run: str, start: int) -> int:
    """Index of the next run of exactly len(run) backticks at or after `start`, or -1."""
    while True:
        j = line.find(run, start)
        if j < 0:
            return -1
        end = j + len(run)
        if (j == 0 or line[j - 1] != "`") and (end >= len(line) or line[end] != "`"):
            return j
        start = end + len(line[end:]) - len(line[end:].lstrip("`")) if end < len(line) else end


def _split_line(line: str, complete: bool) -> tuple[list[str], int]:
    """The sentences that end in `line` (raw text) and how many characters they used.

    For a complete line the remainder after the last sentence end is a sentence too.
    """
    protected, limit = _scan(line, complete)
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(line, 0, limit):
        if any(a <= match.start() < b for a, b in protected):
            continue
        verdict = _is_end(line, match, limit, complete and limit == len(line))
        if verdict is None:
            break  # the next characters decide: wait for them
        if verdict:
            pieces.append(line[start : match.end()])
            start = match.end()
            while start < len(line) and line[start] in " \t":
                start += 1
    if complete:
        if line[start:].strip():
            pieces.append(line[start:])
        return pieces, len(line)
    return pieces, start


def _is_end(line: str, match: re.Match[str], limit: int, line_complete: bool) -> bool | None:
    """Whether the punctuation ends a sentence; None when the characters after it are not here yet."""
    end = match.end()
    if end >= limit:
        return True if line_complete else None
    if not line[end].isspace():
        return False  # 3.14, example.com, e.g.x, "Hi!"-style run-ons
    punct = match.group(0).rstrip("*_\"'”’)]")
    if punct != ".":
        return True
    before = line[max(0, match.start() - 64) : match.start()]  # enough for any word; keeps long lines linear
    token = before.rsplit(None, 1)[-1] if before.strip() else ""
    token = token.lstrip("(\"'“‘*_[")
    if token.lower() in ABBREVIATIONS or _ACRONYM.match(token) or _INITIAL.match(token):
        return False
    following = end
    while following < limit and line[following].isspace():
        following += 1
    if following >= limit:
        return True if line_complete else None
    return not line[following].islower()


def _known_prefix(line: str) -> int:
    """How much of an incomplete line surely belongs to the sentence it starts."""
    protected, limit = _scan(line, complete=False)
    for match in _BOUNDARY.finditer(line, 0, limit):
        if any(a <= match.start() < b for a, b in protected):
            continue
        if _is_end(line, match, limit, line_complete=False) is not False:
            return match.start()  # a possible sentence end: what follows may be another sentence
    return limit


def _early_comma(text: str) -> int | None:
    """Index of the comma to cut a long first sentence at, or None."""
    if len(_words(_speak_piece(text))) <= EARLY_MIN_WORDS:
        return None
    protected, limit = _scan(text, complete=True)
    for i in range(min(limit, len(text) - 1)):
        if text[i] == "," and text[i + 1].isspace() and not any(a <= i < b for a, b in protected):
            if len(_words(_speak_piece(text[:i]))) >= EARLY_COMMA_AFTER:
                return i
    return None


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


# ------------------------------------------------------------ one piece of Markdown as speech


def _speak_piece(raw: str) -> str:
    """One sentence of Markdown as plain speakable text; "" when nothing in it can be said."""
    text = _CONTROL.sub(" ", raw)
    text = _CHECKBOX.sub("", text)
    text = _CODE_SPAN.sub(lambda m: f" {m.group(2).strip()} ", text)
    text = _LINK.sub(_link_words, text)
    text = _AUTOLINK.sub(lambda m: _url_words(m.group(1)), text)
    text = _HTML_TAG.sub(" ", text)
    text = _URL.sub(_bare_url_words, text)
    text = _ESCAPE.sub(r"\1", text)
    text = _EMPHASIS_OPEN.sub("", text)
    text = _EMPHASIS_CLOSE.sub("", text)
    for pattern, words in _SAID_AS:
        text = pattern.sub(words, text)
    text = _WORD_UNDERSCORE.sub(" ", text)
    text = text.replace("|", ", ").replace("`", " ")
    text = _EMOJI.sub("", text)
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;:!?…])", r"\1", text).lstrip(" ,;").rstrip()
    if not any(ch.isalnum() for ch in text):
        return ""
    return text if _TERMINAL.search(text) else text + "."


def _link_words(match: re.Match[str]) -> str:
    image, label, url = match.group(1), match.group(2).strip(), match.group(3)
    if label:
        return label
    return "an image" if image else _url_words(url)


def _bare_url_words(match: re.Match[str]) -> str:
    url = match.group(0)
    trailer = len(url) - len(url.rstrip(_URL_TRAILER))
    if trailer:
        return _url_words(url[:-trailer]) + url[-trailer:]
    return _url_words(url)


def _url_words(url: str) -> str:
    if "@" in url and "://" not in url:
        return url.removeprefix("mailto:")  # an e-mail address reads fine as it is
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    host = host.removeprefix("www.")
    return f"a link to {host}" if host else "a link"


def _table_row(line: str) -> str:
    if _TABLE_SEPARATOR.match(line):
        return ""
    cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)]
    return ", ".join(cell for cell in cells if cell)


def _closes_fence(line: str, fence: str) -> bool:
    stripped = line.strip().lstrip(">").strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


# ------------------------------------------------------------ plain text


def iter_sentences(text: str) -> Iterator[str]:
    """Sentences of plain text, lazily: the same sentence ends as `SentenceStream`, without Markdown."""
    for line in _lines(text):
        start = 0
        for match in _BOUNDARY.finditer(line):
            if _is_end(line, match, len(line), True):
                piece = line[start : match.end()].strip()
                if piece:
                    yield piece
                start = match.end()
        piece = line[start:].strip()
        if piece:
            yield piece


def _lines(text: str) -> Iterator[str]:
    start = 0
    while True:
        newline = text.find("\n", start)
        if newline < 0:
            yield text[start:]
            return
        yield text[start:newline]
        start = newline + 1
