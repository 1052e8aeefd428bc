"""Replies as speech: Markdown to speakable sentences, whole or streamed a few characters at a time."""

from __future__ import annotations

import random

import pytest

from app.voice.speech_text import CODE_BLOCK, SentenceStream, iter_sentences, speakable

REPLY = """# Getting started

Sure! Here is what you need, e.g. Python 3.11 and pip. Dr. Smith from the U.S. says pi is 3.14: close enough.

```python
print("Hello. World!")  # not read aloud
```

- Install it with `pip install hearth`.
- Read [the guide](https://example.org/guide) or https://www.python.org/downloads/.
1. First step
2. **Second** step 🎉

| Name | Size |
|------|-----:|
| tiny | 75 MB |

> Quoted text, etc. Then more.
"""


def whole(text: str, **options: bool) -> list[str]:
    stream = SentenceStream(**options)
    return stream.feed(text) + stream.flush()


def trickled(text: str, seed: int, **options: bool) -> list[str]:
    rng = random.Random(seed)
    stream, out, i = SentenceStream(**options), [], 0
    while i < len(text):
        n = rng.randint(1, 3)
        out += stream.feed(text[i : i + n])
        i += n
    return out + stream.flush()


def test_a_reply_becomes_plain_sentences() -> None:
    assert whole(REPLY) == [
        "Getting started.",
        "Sure!",
        "Here is what you need, for example Python 3.11 and pip.",
        "Dr. Smith from the U.S. says pi is 3.14:",
        "close enough.",
        CODE_BLOCK,
        "Install it with pip install hearth.",
        "Read the guide or a link to python.org.",
        "First step.",
        "Second step.",
        "Name, Size.",
        "tiny, 75 MB.",
        "Quoted text, et cetera.",
        "Then more.",
    ]


@pytest.mark.parametrize("seed", range(40))
def test_deltas_of_one_to_three_characters_give_the_same_sentences(seed: int) -> None:
    assert trickled(REPLY, seed) == whole(REPLY)


@pytest.mark.parametrize(
    "text",
    [
        "When you plan a trip to a country you have never visited, you should read about it first. Then pack.",
        "Unclosed `code span. Still here\nNext line.",
        "A [link that. never closes\nand a <b>tag</b>. Done.",
        "```\nunclosed fence forever",
        "1. one\n- two\n> - three\n## four\n***\n",
        "Costs $3.50 at 10:30 a.m. Tomorrow. Ask J. R. R. Tolkien! Really? yes.",
    ],
)
def test_streaming_matches_whole_for_awkward_text(text: str) -> None:
    for seed in range(25):
        assert trickled(text, seed) == whole(text)


def test_a_sentence_is_returned_as_soon_as_it_is_known_to_be_complete() -> None:
    stream = SentenceStream()
    assert stream.feed("Hello there") == []
    assert stream.feed("! How") == ["Hello there!"]
    assert stream.feed(" are you?") == []  # "?" at the very end: the next character decides
    assert stream.feed(" Fine.") == ["How are you?"]
    assert stream.flush() == ["Fine."]


def test_a_period_waits_for_the_next_word_to_rule_out_an_abbreviation() -> None:
    stream = SentenceStream()
    assert stream.feed("It costs 5 approx. ") == []
    assert stream.feed("five dollars. Then") == ["It costs 5 approximately five dollars."]


def test_a_newline_ends_a_sentence() -> None:
    stream = SentenceStream()
    assert stream.feed("A heading without a stop\nmore") == ["A heading without a stop."]


@pytest.mark.parametrize(
    "text",
    [
        "We use e.g. tools.",
        "Ask Dr. Who now.",
        "Pi is 3.14 exactly.",
        "The U.S. team won.",
        "J. F. Kennedy spoke.",
        "Visit example.com today.",
    ],
)
def test_no_split_inside_abbreviations_numbers_and_names(text: str) -> None:
    assert len(whole(text)) == 1


def test_code_fence_is_held_back_until_it_closes() -> None:
    stream = SentenceStream()
    assert stream.feed("Look:\n```bash\necho hi. there\n") == ["Look:"]
    assert stream.feed("ls -la\n") == []
    assert stream.feed("```\nDone.") == [CODE_BLOCK]
    assert stream.flush() == ["Done."]


def test_code_block_left_open_at_the_end_is_still_announced() -> None:
    assert whole("Try this:\n```\nrm -rf build\n") == ["Try this:", CODE_BLOCK]


def test_inline_code_links_urls_and_images() -> None:
    assert speakable("Call `run()` now.") == "Call run() now."
    assert speakable("See [the docs](https://docs.example.com/x).") == "See the docs."
    assert speakable("Go to https://www.example.com/a?b=1.") == "Go to a link to example.com."
    assert speakable("Or <https://example.net/x>.") == "Or a link to example.net."
    assert speakable("![a cat](cat.png) and ![](dog.png)") == "a cat and an image."


def test_markup_and_emoji_disappear() -> None:
    assert speakable("## **Bold** and _italic_ and ~~gone~~ 🚀✨") == "Bold and italic and gone."
    assert speakable("* item one\n+ item two") == "item one. item two."
    assert speakable("- [x] done task") == "done task."
    assert speakable("Use snake_case names") == "Use snake case names."
    assert speakable("2 * 3 = 6") == "2 * 3 = 6."


def test_abbreviations_are_read_as_words() -> None:
    assert speakable("Fruit, i.e. apples vs. pears, etc.") == "Fruit, that is apples versus pears, et cetera."


def test_tables_read_cell_by_cell_without_borders() -> None:
    assert whole("| a | b |\n|:--|--:|\n| 1 | 2 |") == ["a, b.", "1, 2."]


def test_nothing_to_say_gives_no_sentences() -> None:
    assert whole("") == []
    assert whole("   \n\n---\n***\n🎉🎉\n") == []
    assert speakable("**") == ""


def test_early_first_chunk_cuts_a_long_first_sentence_at_a_comma() -> None:
    stream = SentenceStream()
    first = "When you plan a trip to a country you have never visited,"
    assert stream.feed(first) == []  # the comma is not known to be followed by a space yet
    assert stream.feed(" you") == [first]
    assert stream.feed(" should read about it first. Then") == ["you should read about it first."]


def test_early_cut_needs_a_long_sentence_and_four_words_before_the_comma() -> None:
    assert whole("Short one, then more.") == ["Short one, then more."]
    long_early_comma = "Yes, this sentence has very many words in it but its only comma comes too early."
    assert whole(long_early_comma) == [long_early_comma]
    second = "A second sentence that is long enough to qualify, with words to spare, is never cut."
    assert whole("Only the first one is cut. " + second) == ["Only the first one is cut.", second]
    first = "The first sentence with many words and a comma after four of them, is cut."
    assert whole(first) == ["The first sentence with many words and a comma after four of them,", "is cut."]
    assert whole(first, early_first=False) == [first]


def test_every_chunk_holds_words() -> None:
    for seed in range(10):
        for chunk in trickled(REPLY, seed):
            assert any(ch.isalnum() for ch in chunk), chunk


def test_flush_resets_the_stream() -> None:
    stream = SentenceStream()
    stream.feed("```\ncode")
    assert stream.flush() == [CODE_BLOCK]
    assert stream.feed("New reply. Yes") == ["New reply."]


def test_plain_text_sentences() -> None:
    assert list(iter_sentences("One. Two, e.g. three!\nFour")) == ["One.", "Two, e.g. three!", "Four"]
