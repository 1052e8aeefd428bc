"""The context window as RAM: what the model sees this turn, and what has to leave.

The model sees: the conversation's instructions (pinned, always first), then the dialogue
from the latest context marker's cut. When the next turn would not fit with room for a reply,
the oldest whole turns leave — never silently: the caller stores a ``marker`` message naming
what left and where the model's view now begins, so the prompt prefix stays stable and the KV cache
keeps being reused. We drop down to `REFILL_FRACTION` of the budget rather than to the brim,
so that overflowing costs one full prompt evaluation every several turns, not every turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.core.attachments import picture_addresses, prompt_text
from app.core.conversation import ChatMessage, Message
from app.errors import PromptError

REFILL_FRACTION = 0.75
MIN_REPLY_ROOM = 64  # tokens: below this a reply cannot say anything useful


@dataclass(frozen=True)
class ContextPlan:
    prompt: list[ChatMessage]  # what the engine receives
    used_tokens: int  # tokens of that prompt
    n_ctx: int
    dropped: list[Message]  # dialogue messages that leave the context with this turn

    @property
    def free_tokens(self) -> int:
        return self.n_ctx - self.used_tokens


def visible_dialogue(history: Sequence[Message]) -> list[Message]:
    """The dialogue the model still sees: from the latest context marker's cut, no empty replies."""
    start_id = 0
    for message in history:
        if message.role == "marker" and message.meta.get("kind") == "context":
            start_id = int(message.meta.get("context_from", message.id))
    return [m for m in history if m.id >= start_id and m.in_dialogue and (m.content or m.role == "user")]


def to_chat(system_prompt: str, dialogue: Sequence[Message]) -> list[ChatMessage]:
    prompt = [ChatMessage("system", system_prompt)] if system_prompt else []
    # A user's pictures enter as the text read from them, rendered from what the message stored,
    # so an old message reads the same on every turn and the KV cache stays reusable; a model
    # that can see also gets the pictures themselves.
    prompt += [ChatMessage(m.role, prompt_text(m), picture_addresses(m)) for m in dialogue]  # type: ignore[arg-type]
    return prompt


def turn_starts(dialogue: Sequence[Message]) -> list[int]:
    """Indexes where a turn (a user message and what follows it) begins."""
    return [i for i, m in enumerate(dialogue) if m.role == "user"] or [0]


def plan_context(
    system_prompt: str,
    history: Sequence[Message],
    count_tokens: Callable[[Sequence[ChatMessage]], int],
    n_ctx: int,
    reply_room: int,
) -> ContextPlan:
    """Choose the prompt for the next reply, dropping the oldest turns if it would overflow."""
    dialogue = visible_dialogue(history)
    reply_room = max(MIN_REPLY_ROOM, min(reply_room, n_ctx // 2))
    budget = n_ctx - reply_room
    used = count_tokens(to_chat(system_prompt, dialogue))
    if used <= budget:
        return ContextPlan(to_chat(system_prompt, dialogue), used, n_ctx, [])

    starts = turn_starts(dialogue)
    last_turn = starts[-1]
    alone = count_tokens(to_chat(system_prompt, dialogue[last_turn:]))
    if alone > budget:
        raise PromptError(
            f"This message needs {alone} tokens with the instructions, but the context holds {n_ctx} "
            f"and {reply_room} are kept for the reply.",
            "Shorten the message, or raise the context size in Settings › Model.",
        )
    cut = _first_fitting_cut(system_prompt, dialogue, starts, count_tokens, int(budget * REFILL_FRACTION))
    kept = dialogue[cut:]
    prompt = to_chat(system_prompt, kept)
    return ContextPlan(prompt, count_tokens(prompt), n_ctx, list(dialogue[:cut]))


def _first_fitting_cut(
    system_prompt: str,
    dialogue: Sequence[Message],
    starts: list[int],
    count_tokens: Callable[[Sequence[ChatMessage]], int],
    target: int,
) -> int:
    """Binary-search the fewest whole turns to drop so the rest fits in `target` tokens.

    The newest turn is always kept (the caller checked it fits the budget), even when it
    alone is over the lower refill target.
    """
    cuts = [s for s in starts if s > 0] or [0]  # cut points that drop at least one message
    lo, hi = 0, len(cuts) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if count_tokens(to_chat(system_prompt, dialogue[cuts[mid] :])) <= target:
            hi = mid
        else:
            lo = mid + 1
    return cuts[lo]


def describe_drop(dropped: Sequence[Message]) -> str:
    """The marker's text: what left the context, in words a user can check."""
    turns = sum(1 for m in dropped if m.role == "user")
    first = next((m.content for m in dropped if m.role == "user"), dropped[0].content if dropped else "")
    preview = " ".join(first.split())[:60]
    plural = "s" if len(dropped) != 1 else ""
    return (
        f"{len(dropped)} earlier message{plural} ({turns} turn{'s' if turns != 1 else ''}, from “{preview}…”) "
        "left the model's context to make room. They stay here, but the model no longer sees them."
    )
