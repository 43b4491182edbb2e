"""Prompt templates: one file per prompt in prompts/, with `--- system` and `--- user` sections.

Placeholders are `{{name}}` and are filled by plain substitution (values are never re-parsed, so braces in
documents are harmless). The template's content hash is its version: it goes into every llm_calls row and into the
cache key, so editing a prompt invalidates exactly the answers it produced.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def prompts_dir() -> Path:
    """TNT_PROMPTS_DIR, else the prompts shipped in the package (a wheel: workflow/prompts), else the checkout's
    top-level prompts/ (a source tree or an editable install)."""
    if os.environ.get("TNT_PROMPTS_DIR"):
        return Path(os.environ["TNT_PROMPTS_DIR"])
    here = Path(__file__).resolve()
    packaged = here.parents[1] / "prompts"
    return packaged if packaged.is_dir() else here.parents[2] / "prompts"


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    sections: tuple[tuple[str, str], ...]

    def render(self, **values: object) -> list[dict[str, str]]:
        def fill(text: str) -> str:
            def sub(m: re.Match[str]) -> str:
                if m.group(1) not in values:
                    raise KeyError(f"prompt {self.name} needs a value for {{{{{m.group(1)}}}}}")
                return str(values[m.group(1)])

            return _PLACEHOLDER.sub(sub, text)

        return [{"role": role, "content": fill(body)} for role, body in self.sections]


@cache
def load_prompt(name: str) -> Prompt:
    path = prompts_dir() / f"{name}.md"
    if not path.exists():
        raise FileNotFoundError(f"prompt template {path} is missing")
    raw = path.read_text(encoding="utf-8")
    sections: list[tuple[str, str]] = []
    for block in re.split(r"^--- ", raw, flags=re.M):
        if not block.strip():
            continue
        role, _, body = block.partition("\n")
        sections.append((role.strip(), body.strip()))
    if not sections or any(r not in ("system", "user") for r, _ in sections):
        raise ValueError(f"prompt template {path} must consist of '--- system' / '--- user' sections")
    return Prompt(name, hashlib.sha256(raw.encode()).hexdigest()[:12], tuple(sections))


def fence(text: str, *tags: str) -> str:
    """Neutralise the prompt's fence tags (default: document) inside untrusted text, so a document cannot end its
    own fence early or open another one."""
    names = "|".join(re.escape(t) for t in (tags or ("document",)))
    return re.sub(rf"</?\s*(?:{names})\s*>", "[tag removed]", text, flags=re.I)
