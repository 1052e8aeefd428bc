"""Word error rate: normalisation and the edit distance behind it."""

from __future__ import annotations

import pytest

from app.voice.wer import edit_distance, normalise_words, word_error_rate


def test_identical_texts_score_zero_whatever_the_case_and_punctuation() -> None:
    assert word_error_rate("And so, my fellow Americans!", "and so my fellow americans") == 0.0


def test_normalising_keeps_only_words() -> None:
    assert normalise_words("Don’t stop—it's “well-known”, e.g. here/there.") == [
        "do",
        "not",
        "stop",
        "it",
        "is",
        "well",
        "known",
        "eg",
        "here",
        "there",
    ]


@pytest.mark.parametrize(
    ("said", "written"),
    [
        ("that is enough", "That's enough."),
        ("I do not know", "I don't know"),
        ("we will see what you are doing", "We'll see what you're doing"),
        ("I can not and I will not", "I can't and I won't"),
        ("let us go", "Let's go"),
    ],
)
def test_contractions_match_the_words_spelled_out(said: str, written: str) -> None:
    assert word_error_rate(said, written) == 0.0


def test_a_possessive_is_not_spelled_out() -> None:
    assert normalise_words("John's book") == ["johns", "book"]


@pytest.mark.parametrize(
    ("reference", "hypothesis", "errors"),
    [
        ("a b c d", "a b c d", 0),
        ("a b c d", "a x c d", 1),  # substitution
        ("a b c d", "a c d", 1),  # deletion
        ("a b c d", "a b b c d", 1),  # insertion
        ("a b c d", "", 4),
        ("a b c d", "d c b a", 4),
    ],
)
def test_counts_substitutions_deletions_and_insertions(reference: str, hypothesis: str, errors: int) -> None:
    assert edit_distance(reference.split(), hypothesis.split()) == errors
    assert word_error_rate(reference, hypothesis) == pytest.approx(errors / 4)


def test_extra_words_can_push_the_rate_above_one() -> None:
    assert word_error_rate("yes", "yes yes yes") == pytest.approx(2.0)


def test_empty_reference() -> None:
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("  ...  ", "") == 0.0
    assert word_error_rate("", "something") == 1.0
