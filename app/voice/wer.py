"""Word error rate: how far a transcript is from what was said.

Both texts are normalised first — lower case, contractions spelled out ("that's" and "that is",
"don't" and "do not" match), punctuation dropped, hyphens and slashes read as spaces — so only
the words count. WER = (substitutions + deletions + insertions) / words in the reference, from a
word-level edit distance. It can exceed 1 when the hypothesis adds many words.
"""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[-‐‑‒–—/_]+")
_NOT_WORD = re.compile(r"[^\w\s]")
_IRREGULAR = {"can't": "can not", "cannot": "can not", "won't": "will not", "shan't": "shall not", "let's": "let us"}
_IS = r"that|it|what|there|here|he|she|who|where|how|when|why"  # "'s" after these is "is" (else a possessive)
_CONTRACTIONS = [
    (re.compile(r"\b(\w+)n't\b"), r"\1 not"),
    (re.compile(rf"\b({_IS})'s\b"), r"\1 is"),
    (re.compile(r"\bi'm\b"), "i am"),
    (re.compile(r"\b(\w+)'re\b"), r"\1 are"),
    (re.compile(r"\b(\w+)'ve\b"), r"\1 have"),
    (re.compile(r"\b(\w+)'ll\b"), r"\1 will"),
    (re.compile(r"\b(\w+)'d\b"), r"\1 would"),
]


def normalise_words(text: str) -> list[str]:
    """The words of `text`, normalised for comparison."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("‘", "'")
    for short, long in _IRREGULAR.items():
        text = re.sub(rf"\b{short}\b", long, text)
    for pattern, spelled in _CONTRACTIONS:
        text = pattern.sub(spelled, text)
    text = _SEPARATORS.sub(" ", text)
    text = _NOT_WORD.sub("", text)
    return text.split()


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Fewest word substitutions, deletions and insertions that turn `reference` into `hypothesis`."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Errors per reference word after normalising both texts; 0.0 is a perfect match.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 for any words at all.
    """
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
