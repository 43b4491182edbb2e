"""Text helpers shared by nodes: cutting documents to a token budget before they reach a prompt."""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def clip(text: str, max_tokens: int) -> str:
    """Cut a document to about max_tokens tokens (4 characters each, a conservative average for English)."""
    limit = max_tokens * CHARS_PER_TOKEN
    return text if len(text) <= limit else text[:limit] + " [truncated]"


def approx_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1
