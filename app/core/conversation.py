"""Conversations and messages as plain data.

A message's `role` is one of:
- ``user`` / ``assistant``: the dialogue;
- ``marker``: a notice shown in the chat but never sent to the model — today, "these earlier
  messages left the context". The model's context starts after the latest marker.

A message's `status` says how it ended: ``complete``; ``streaming`` while a reply is being written
(and, after a crash, until the next start marks it ``interrupted``); ``stopped`` when the user
pressed Stop; ``error`` when generation failed part-way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from app.engines.llm import ChatMessage as ChatMessage  # what an engine sees: defined with the engine contract

Role = Literal["user", "assistant", "marker"]
Status = Literal["complete", "streaming", "stopped", "interrupted", "error"]
ROLES: tuple[str, ...] = ("user", "assistant", "marker")
STATUSES: tuple[str, ...] = ("complete", "streaming", "stopped", "interrupted", "error")


@dataclass
class Message:
    id: int
    conversation_id: int
    role: Role
    content: str
    status: Status = "complete"
    created_at: float = field(default_factory=time.time)
    model_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def in_dialogue(self) -> bool:
        return self.role in ("user", "assistant")


@dataclass
class Conversation:
    id: int
    title: str
    system_prompt: str | None = None  # None: use the global default instructions
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    model_id: str | None = None


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    message_id: int | None
    title: str
    snippet: str
