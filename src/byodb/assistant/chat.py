"""Chat models. The offline model is the default: deterministic, labelled as such, no network.
An OpenAI-compatible endpoint is used when ``BYODB_LLM_BASE_URL`` (or ``OPENAI_BASE_URL``)
is configured."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from byodb.settings import Settings


@dataclass(frozen=True)
class ChatTurn:
    role: str  # "system" | "user" | "assistant"
    content: str


class ChatModel(Protocol):
    name: str

    def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        """Yield the reply in pieces."""
        ...


class OfflineChatModel:
    """A deterministic stand-in model that runs without network; says so in every reply."""

    name = "offline"

    async def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        last = next((t.content for t in reversed(turns) if t.role == "user"), "")
        words = last.split()
        earlier = sum(1 for t in turns if t.role == "user") - 1
        reply = (
            "[offline model] No language model is configured on this server, so this is a "
            f"placeholder reply. Your message had {len(words)} word"
            f"{'' if len(words) == 1 else 's'}"
            + (f" and began with “{' '.join(words[:6])}”" if words else "")
            + (f"; this conversation has {earlier} earlier message"
               f"{'' if earlier == 1 else 's'} from you." if earlier > 0 else ".")
        )
        for index, word in enumerate(reply.split(" ")):
            yield word if index == 0 else " " + word


class OpenAICompatibleChatModel:
    """Any server speaking the OpenAI chat-completions API with streaming."""

    def __init__(self, base_url: str, api_key: str | None, model: str):
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.name = model

    async def stream(self, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body = {"model": self.name, "stream": True,
                "messages": [{"role": t.role, "content": t.content} for t in turns]}
        timeout = httpx.Timeout(60.0, connect=10.0)
        async with httpx.AsyncClient(timeout=timeout) as client, client.stream(
                "POST", f"{self._base_url}/chat/completions", json=body,
                headers=headers) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                choice = (json.loads(data).get("choices") or [{}])[0]
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece


def chat_model_from_settings(settings: Settings) -> ChatModel:
    if settings.llm_base_url:
        return OpenAICompatibleChatModel(settings.llm_base_url, settings.llm_api_key,
                                         settings.llm_model)
    return OfflineChatModel()
