"""Keep API keys out of everything tnt prints, logs or stores.

A provider's error message may echo the key it was sent ("Incorrect API key provided: sk-proj-..."). Every error
text that reaches the terminal, the log or the database passes through `redact` first.
"""

from __future__ import annotations

import logging
import os
import re

# Token shapes that are secrets wherever they appear: OpenAI/Anthropic-style `sk-...`, bearer tokens, and
# key=... pairs in URLs or messages.
_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)\b((?:api[_-]?key|access[_-]?token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]{6,}"),
]
_SECRET_ENV = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$")
MASK = "[REDACTED]"


def _env_secrets() -> list[str]:
    """Values of the environment variables litellm reads keys from (OPENAI_API_KEY, AZURE_API_KEY, ...)."""
    return sorted({v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 6}, key=len, reverse=True)


def redact(text: str | None) -> str | None:
    """The text with every known secret replaced by [REDACTED]."""
    if not text:
        return text
    for value in _env_secrets():
        text = text.replace(value, MASK)
    text = _PATTERNS[0].sub(MASK, text)
    for pattern in _PATTERNS[1:]:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's rendered message (attach it to the handlers tnt installs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True
