"""`--redact-pii`: personal data is scrubbed from every prompt before it leaves the machine.

The gateway (workflow/llm/gateway.py) scrubs each rendered prompt sent to a model that is not the embedded one
(`local/...` runs in-process; test models count as remote, so the tests see what a provider would). Stored documents
keep their text; what was scrubbed is counted per call in the store (`redactions`), never kept.

Rules, not a model (nothing to download): e-mail addresses; card numbers (13-19 digits, spaces or dashes allowed,
Luhn checksum valid); IBANs (country code, check digits, ISO 13616 mod-97 valid); phone numbers (an international
`+` number of 7-15 digits, or 9-15 digits in groups, the national formats with an area code). Rules are applied in
that order, so a card number is never half-scrubbed as a phone. Long digit runs (order or account numbers) may be
scrubbed as phones: a privacy filter errs on the side of removing.
"""

from __future__ import annotations

import re
from collections import Counter

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w-])")
CARD = re.compile(r"(?<![\w+])\d(?:[ -]?\d){12,18}(?![\w])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}"
                  r"(?: [A-Za-z0-9]{1,3})?)"
                  r"(?![A-Za-z0-9])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{1,5}){1,6}(?![\w])"
                   r"|(?<![\w])\+\d{6,15}(?!\w)")
TOKENS = {"email": "[EMAIL]", "card": "[CARD]", "iban": "[IBAN]", "phone": "[PHONE]"}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _is_card(m: re.Match[str]) -> bool:
    d = _digits(m.group())
    return 13 <= len(d) <= 19 and luhn_ok(d)


def _is_phone(m: re.Match[str]) -> bool:
    s = m.group()
    n = len(_digits(s))
    if s.startswith("+") or s.startswith("("):
        return 7 <= n <= 15
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) or re.fullmatch(r"\d{1,3}(?:\.\d{3})+", s):
        return False  # a date or an amount with thousands separators
    return 9 <= n <= 15


RULES = (("email", EMAIL, None), ("card", CARD, _is_card), ("iban", IBAN, lambda m: iban_ok(m.group())),
         ("phone", PHONE, _is_phone))


def scrub(text: str) -> tuple[str, Counter[str]]:
    """The text with personal data replaced by [EMAIL], [CARD], [IBAN], [PHONE], and how many spans of each."""
    counts: Counter[str] = Counter()
    for kind, pattern, valid in RULES:
        def sub(m: re.Match[str], kind: str = kind, valid=valid) -> str:
            if valid is not None and not valid(m):
                return m.group()
            counts[kind] += 1
            return TOKENS[kind]

        text = pattern.sub(sub, text)
    return text, counts


def scrub_messages(messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], Counter[str]]:
    """Chat messages with every content scrubbed, and the spans removed from all of them."""
    total: Counter[str] = Counter()
    out = []
    for m in messages:
        text, counts = scrub(m["content"])
        total += counts
        out.append({**m, "content": text})
    return out, total


def is_local_model(model: str) -> bool:
    """The embedded model runs in this process: prompts to it never leave the machine."""
    return model.split("/", 1)[0] == "local"


def redaction_line(counts: dict[str, int], prompts_sent: int) -> str:
    """The run summary's line for --redact-pii (counts: `Store.redaction_counts`)."""
    spans = {k: n for k, n in counts.items() if k != "prompts"}
    if not spans:
        return (f"--redact-pii: no personal data found in the {prompts_sent} prompts this run sent"
                if prompts_sent else "--redact-pii: this run sent no prompt (answers from the cache or no model calls)")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(spans.items()))
    return (f"--redact-pii: {sum(spans.values())} spans of personal data scrubbed from {counts.get('prompts', 0)} "
            f"of {prompts_sent} prompts before they were sent ({kinds}); stored documents keep the text")
