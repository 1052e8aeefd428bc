"""Chat templates: the GGUF's own, read the way vision models' templates expect their content."""

from __future__ import annotations

from app.core.conversation import ChatMessage
from app.engines.chat_template import choose_template

# The shape of SmolVLM's template: content is always a list of typed parts.
PARTS_ONLY = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}{% endif %}{% endfor %}\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
STRINGS = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
PROMPT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there.")]


def test_a_template_that_reads_parts_gets_every_message_whole() -> None:
    template = choose_template(PARTS_ONLY, "auto", "", "")
    assert template.reads_parts
    assert template.render(PROMPT, parts=True) == "System:Be brief.User:Hello there.Assistant:"
    # Handed plain strings, such a template silently drops every word: why `parts` exists.
    assert "Be brief." not in template.render(PROMPT)


def test_a_template_that_reads_strings_is_left_as_it_is() -> None:
    template = choose_template(STRINGS, "auto", "", "")
    assert not template.reads_parts
    assert template.render(PROMPT) == "<system>Be brief.\n<user>Hello there.\n"
