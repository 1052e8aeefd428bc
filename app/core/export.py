"""Exporting a conversation as Markdown (for people) or JSON (for programs and re-import).

The JSON shape is a documented, versioned contract::

    {
      "format": "hearth.conversation",
      "version": 1,
      "conversation": {"id", "title", "system_prompt", "model_id", "created_at", "updated_at"},
      "messages": [{"id", "role", "content", "status", "created_at", "model_id", "meta"}, ...]
    }

Times are seconds since the Unix epoch (floats), `system_prompt` / `model_id` may be null, and
`meta` is always an object. Readers should ignore keys they do not know; a change that removes
or re-types a key bumps `version`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.conversation import Conversation, Message
from app.errors import HearthError

if TYPE_CHECKING:
    from app.core.store import Store

FORMAT = "hearth.conversation"
VERSION = 1

_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant"}
_STATUS_NOTES = {
    "stopped": "Stopped before the reply was finished.",
    "interrupted": "Interrupted before this reply was finished.",
    "error": "Generation failed part-way; this reply is incomplete.",
    "streaming": "Still being written when this was exported.",
}


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "Untitled conversation"


def _markdown_message(message: Message) -> str:
    if message.role == "marker":
        return _quote(f"**Note:** {message.content}")
    heading = _ROLE_HEADINGS.get(message.role, message.role.title())
    if message.role == "assistant" and message.model_id:
        heading += f" ({message.model_id})"
    parts = [f"## {heading}", message.content.rstrip()]
    note = _STATUS_NOTES.get(message.status)
    if note:
        parts.append(f"*({note})*")
    return "\n\n".join(part for part in parts if part)


def to_markdown(conversation: Conversation, messages: list[Message]) -> str:
    """A readable transcript: title, any custom instructions, then each message under its role."""
    blocks = [f"# {_one_line(conversation.title)}"]
    if conversation.system_prompt:
        blocks.append("**Custom instructions:**\n\n" + _quote(conversation.system_prompt))
    blocks.extend(_markdown_message(message) for message in messages)
    return "\n\n".join(blocks) + "\n"


def _conversation_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "model_id": conversation.model_id,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


def _message_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at,
        "model_id": message.model_id,
        "meta": message.meta,
    }


def to_json(conversation: Conversation, messages: list[Message]) -> str:
    document = {
        "format": FORMAT,
        "version": VERSION,
        "conversation": _conversation_dict(conversation),
        "messages": [_message_dict(message) for message in messages],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def from_json(text: str) -> tuple[Conversation, list[Message]]:
    """Read back what `to_json` wrote; ValueError when the text is not a Hearth export."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not a Hearth conversation export")
    if document.get("version") != VERSION:
        raise ValueError(f"unsupported Hearth export version {document.get('version')!r}")
    try:
        conversation = Conversation(**document["conversation"])
        messages = [Message(conversation_id=conversation.id, **item) for item in document["messages"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed Hearth export: {exc}") from exc
    return conversation, messages


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, so a failed export never leaves half a file."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def export_conversation(store: Store, conversation_id: int, path: Path) -> None:
    """Write one conversation to `path`, as Markdown (.md) or JSON (.json) by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        render = to_markdown
    elif suffix == ".json":
        render = to_json
    else:
        raise HearthError(
            f"Hearth cannot export to a '{path.suffix or 'no extension'}' file.",
            "Choose a file name ending in .md (Markdown) or .json.",
        )
    text = render(store.get_conversation(conversation_id), store.messages(conversation_id))
    try:
        _write_atomically(path, text)
    except OSError as exc:
        raise HearthError(
            f"Hearth could not write the export to {path} ({exc.strerror or exc}).",
            "Choose another folder, or free up some space.",
        ) from exc
