"""Turning a list of chat messages into the exact prompt text a model was trained on.

A GGUF usually carries its own Jinja chat template (`tokenizer.chat_template`). That template
comes from a downloaded file, so it runs in Jinja's immutable sandbox: it can format strings,
but it cannot reach Python objects, files or the network. When a GGUF has no template (or the
user picks one), a named fallback from `FALLBACKS` is used instead, and the engine reports
which one, so a garbled conversation is never a mystery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.engines.llm import ChatMessage
from app.errors import ModelError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

GEMMA = (
    "{{ bos_token }}"
    "{% set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% set prefix = system + '\n\n' if loop.first and system else '' %}"
    "{{ '<start_of_turn>' + role + '\n' + prefix + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Plain text for base models and anything else: readable, and it still separates the speakers.
PLAIN = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n' }}"
    "{% else %}{{ 'Assistant: ' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

FALLBACKS: dict[str, str] = {"chatml": CHATML, "llama3": LLAMA3, "gemma": GEMMA, "plain": PLAIN}
DEFAULT_FALLBACK = "chatml"
# Extra stop strings per fallback, for models whose end-of-turn marker is not an end-of-generation token.
FALLBACK_STOPS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_end|>", "<|im_start|>"),
    "llama3": ("<|eot_id|>",),
    "gemma": ("<end_of_turn>",),
    "plain": ("\nUser:",),
}


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Hugging Face templates may wrap assistant turns in `{% generation %}`; it only marks spans."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)


@dataclass(frozen=True)
class ChatTemplate:
    """A compiled template plus the name it is known by ("gguf" or a fallback's name)."""

    name: str
    source: str
    bos_token: str = ""
    eos_token: str = ""

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return FALLBACK_STOPS.get(self.name, ())

    @property
    def reads_parts(self) -> bool:
        """The template reads a message's content as a list of typed parts (as many vision models'
        templates do: `for part in message['content']`), not as one string."""
        return "['type']" in self.source or ".type" in self.source

    def render(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True, *, parts: bool = False
    ) -> str:
        """The prompt text; `parts` hands each message's content over as one text part."""
        try:
            return _compile(self.source).render(
                messages=[
                    {"role": m.role, "content": [{"type": "text", "text": m.content}] if parts else m.content}
                    for m in messages
                ],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                raise_exception=_raise_exception,
                strftime_now=lambda fmt: datetime.now().strftime(fmt),
            )
        except jinja2.exceptions.TemplateError as exc:
            raise ModelError(
                f"The chat template '{self.name}' failed to format this conversation ({exc}).",
                "Pick another chat format for this model in Settings › Model.",
            ) from exc


_compiled: dict[str, jinja2.Template] = {}


def _compile(source: str) -> jinja2.Template:
    template = _compiled.get(source)
    if template is None:
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        template = env.from_string(source)
        _compiled[source] = template
    return template


def choose_template(gguf_template: str | None, chat_format: str, bos: str, eos: str) -> ChatTemplate:
    """`chat_format` is "auto" (the GGUF's own, else the default fallback) or a fallback's name."""
    if chat_format not in ("auto", *FALLBACKS):
        raise ModelError(
            f"Unknown chat format '{chat_format}'.",
            f"Choose one of: auto, {', '.join(FALLBACKS)}.",
        )
    if chat_format == "auto" and gguf_template:
        try:
            _compile(gguf_template)
            return ChatTemplate("gguf", gguf_template, bos, eos)
        except jinja2.exceptions.TemplateError:
            pass  # a broken embedded template: fall back, and the engine info shows which one
    name = DEFAULT_FALLBACK if chat_format == "auto" else chat_format
    return ChatTemplate(name, FALLBACKS[name], bos, eos)
