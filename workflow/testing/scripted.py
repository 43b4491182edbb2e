"""A deterministic model for tests and dry runs, reached through the same gateway as production models: importing
this module registers the `scripted/` prefix in workflow/llm/registry.py (an installed tnt also finds it through
the `tnt.transports` entry point).

`scripted/keywords` reads its prompt like a (very literal) model would: summaries are the first words of the
document, taxonomy labels are the corpus's most frequent content words, and a document gets the label whose
keyword it contains (else "other"). Tests can register other behaviours with `register_script`, e.g. to answer
with invalid JSON first or to raise provider errors.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable

from workflow.llm import registry
from workflow.llm.base import RawResponse

Responder = Callable[[str, list[dict[str, str]], dict], str]

STOPWORDS = set(
    """a an the and or but if of to in on at for from by with about as is are was were be been being am do does did
    done have has had i me my mine we our you your he she it its they them their this that these those what which who
    whom how why when where can could would should will shall may might must not no yes so than then too very just
    still there here up down out over under again more most some any all each few other such only own same into
    through during before after above below off per via get got getting want need please help hi hello thanks thank
    know tell use using used one two also much many way ive im dont cant wont didnt isnt doesnt haven hasnt""".split()
)

# Which prompt a request comes from, by the name of its response schema (for servers that answer like a script).
PROMPT_OF_SCHEMA = {"Summary": "summarize", "ProposedTaxonomy": "propose", "UpdatedTaxonomy": "update",
                    "ReviewedTaxonomy": "review", "Assignment": "label", "MultiAssignment": "label_multi",
                    "ClusterName": "name_cluster", "MergedTaxonomy": "merge_labels", "Recheck": "recheck"}

_scripts: dict[str, Responder] = {}
_lock = threading.Lock()
calls: Counter[str] = Counter()


def register_script(name: str, responder: Responder) -> None:
    """Make `scripted/<name>` answer with `responder(prompt_name, messages, schema)`."""
    _scripts[name] = responder


def _between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, flags=re.S)
    return m.group(1) if m else ""


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in STOPWORDS]


def _taxonomy_lines(text: str) -> list[tuple[str, str]]:
    """(id, name) pairs from a prompt's taxonomy: 'L1: name - description' lines or one JSON label per line."""
    pairs = [(m.group(1), m.group(2).strip()) for m in re.finditer(r"^(L\d+): (.+?) - ", text, flags=re.M)]
    for line in text.splitlines():
        if line.startswith('{"id": "L'):
            label = json.loads(line)
            pairs.append((label["id"], label["name"]))
    return pairs


def _int_after(text: str, pattern: str, default: int) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else default


def keywords(prompt_name: str, messages: list[dict[str, str]], schema: dict) -> str:
    user = next(m["content"] for m in messages if m["role"] == "user")
    if prompt_name == "summarize":
        n = _int_after(user, r"at most (\d+) words", 20)
        words = _between(user, "document").split()[:n]
        return json.dumps({"summary": " ".join(words) or "empty"})
    if prompt_name in ("propose", "update", "review"):
        max_labels = _int_after(user, r"at most (\d+) labels", 10)
        existing = _taxonomy_lines(user)
        counts = Counter(_words(_between(user, "summaries")))
        labels = [{"id": i, "name": n, "description": f"Documents about {n.split()[0].lower()}."} for i, n in existing]
        taken = {n.split()[0].lower() for _, n in existing}
        for word, _ in counts.most_common():
            if len(labels) >= max_labels:
                break
            if word not in taken:
                taken.add(word)
                labels.append({"id": None, "name": f"{word.capitalize()} requests",
                               "description": f"Documents about {word}."})
        if len(labels) < 2:
            labels += [{"id": None, "name": "Account questions", "description": "Documents about accounts."}]
            labels += [{"id": None, "name": "Card questions", "description": "Documents about cards."}]
        out: dict = {"labels": labels[:max_labels]}
        if prompt_name == "update":
            out |= {"rating": 7, "suggestions": "Add labels for frequent topics that are missing."}
        if prompt_name == "review":
            out |= {"notes": "Kept labels as they are."}
        return json.dumps(out)
    if prompt_name == "name_cluster":  # the first typical word the contrast lacks, else the most frequent word
        contrast = set(_words(_between(user, "contrast")))
        typical = re.search(r"^Words typical of the group: (.*)$", user, flags=re.M)
        listed = [w for w in (typical.group(1).split(", ") if typical else []) if re.fullmatch(r"[a-z]+", w)]
        counts = Counter(w for w in _words(_between(user, "documents")) if w not in contrast) or Counter(
            _words(_between(user, "documents")))
        # of the typical words the contrast lacks, the one most of the group's documents use (as a person would
        # name a group by its common topic, not its rarest word); listed order breaks ties
        candidates = [w for w in listed if w not in contrast and w not in STOPWORDS]
        word = max(candidates, key=lambda w: counts[w], default=None) or (
            counts.most_common(1)[0][0] if counts else "misc")
        return json.dumps({"name": f"{word.capitalize()} requests", "description": f"Documents about {word}."})
    if prompt_name == "merge_labels":  # candidates sharing a first word become one label, up to the cap
        max_labels = _int_after(user, r"at most (\d+) final labels", 10)
        groups: dict[str, list[str]] = {}
        for line in user.splitlines():
            if line.startswith('{"id": '):
                cand = json.loads(line)
                groups.setdefault(cand["name"].split()[0].lower(), []).append(cand["id"])
        labels = [{"name": f"{w.capitalize()} requests", "description": f"Documents about {w}.", "members": m}
                  for w, m in list(groups.items())[:max_labels]]
        return json.dumps({"labels": labels})
    if prompt_name == "label_multi":  # every label whose keyword occurs, in taxonomy order
        doc = set(_words(_between(user, "document")))
        k = _int_after(user, r"at most (\d+)\.", 3)
        hits = [{"id": i, "name": n} for i, n in _taxonomy_lines(user) if n.split()[0].lower() in doc][:k]
        return json.dumps({"labels": hits or [{"id": "other", "name": "Other"}], "rationale": "Keywords.",
                           "confidence": "high" if hits else "low"})
    if prompt_name == "label":
        doc = set(_words(_between(user, "document")))
        for label_id, name in _taxonomy_lines(user):
            if name.split()[0].lower() in doc:
                return json.dumps({"label_id": label_id, "label_name": name, "rationale": "Mentions the keyword.",
                                   "confidence": "high"})
        return json.dumps({"label_id": "other", "label_name": "Other", "rationale": "No keyword.", "confidence": "low"})
    if prompt_name == "recheck":
        return json.dumps(recheck_choice(user, lambda i, n, doc: n.split()[0].lower() in doc))
    if prompt_name in ("hierarchy_propose", "hierarchy_assign"):
        return _hierarchy(prompt_name, user)
    return json.dumps({})


def offered_choices(user: str) -> list[tuple[str, str]]:
    """(id, name) of the labels a recheck prompt offers, in the order shown."""
    return [(m.group(1), m.group(2).strip()) for m in re.finditer(r"^(L\d+|other): (.+?) - ", user, flags=re.M)]


def recheck_choice(user: str, fits: Callable[[str, str, set[str]], bool]) -> dict:
    """A recheck answer: the first offered label that ``fits(id, name, document words)``, else Other when offered,
    else the first offered (keywords: the label whose name's first word the document contains)."""
    offered = offered_choices(user)
    doc = set(_words(_between(user, "document")))
    pick = next(((i, n) for i, n in offered if fits(i, n, doc)), None) or next(
        ((i, n) for i, n in offered if i == "other"), offered[0] if offered else ("other", "Other"))
    return {"label": {"name": pick[1], "id": pick[0]}, "rationale": "Keyword check.", "confidence": "medium"}


def _hierarchy(prompt_name: str, user: str) -> str:
    """Parents group labels by position (pairs of neighbours); a label goes to the parent naming its keyword."""
    if prompt_name == "hierarchy_propose":
        names = [n for _, n in _taxonomy_lines(_between(user, "labels"))]
        k = max(1, min(_int_after(user, r"at most (\d+) broader", 5), (len(names) + 1) // 2))
        groups = [names[i::k] for i in range(k)]
        return json.dumps({"labels": [
            {"name": " and ".join(n.split()[0] for n in g) + " topics", "description": "Groups " + ", ".join(g) + "."}
            for g in groups if g]})
    parents = re.findall(r"^(P\d+): (.+?) - ", user, flags=re.M)
    label = _taxonomy_lines(_between(user, "label"))
    word = label[0][1].split()[0].lower() if label else ""
    pid = next((p for p, n in parents if word in n.lower().split()), parents[0][0] if parents else "P1")
    return json.dumps({"parent_id": pid})


register_script("keywords", keywords)


class ScriptedTransport:
    max_concurrency = 4

    def complete(self, model, messages, *, schema, schema_name, prompt_name, temperature, max_tokens, seed, timeout):
        name = model.split("/", 1)[1]
        if name not in _scripts:
            raise ValueError(f"no scripted model '{name}' (known: {sorted(_scripts)})")
        with _lock:
            calls[name] += 1
        text = _scripts[name](prompt_name, messages, schema)
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4
        truncated = len(text) > 4 * max_tokens  # as a real model stops at max_tokens (4 characters a token here)
        if truncated:
            text = text[: 4 * max_tokens]
        return RawResponse(text, prompt_tokens, len(text) // 4, 0.0, truncated)

    def estimate_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0

    def context_window(self, model: str) -> int:
        return 128_000


def transport(api_base: str | None = None) -> ScriptedTransport:
    """The registry's factory (one instance serves every scripted model)."""
    return ScriptedTransport()


registry.register("scripted", transport)
