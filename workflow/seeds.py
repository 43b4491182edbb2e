"""Labels a user already has (`tnt run --labels FILE`): read, checked and kept in the run's config.

A labels file is YAML, JSON or CSV. YAML/JSON: a list of labels, or ``{"labels": [...]}``; a label is a name
alone or ``{name, description, examples}`` (examples: a list of texts, or one text). CSV: a header with ``name``
and optionally ``description`` and ``examples`` (several examples separated by ``|``). Anything else (unknown
fields, empty or repeated names, "Other", which tnt adds itself) is refused with one line naming the label.

The labels' content, not the file's path, goes into the run config, so `tnt resume` works when the file has moved.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FIELDS = ("name", "description", "examples")
MAX_NAME_CHARS = 120
MAX_EXAMPLES = 50  # examples place a label in embedding space; more add little and make prompts long
MAX_FILE_BYTES = 5_000_000


class SeedFileError(ValueError):
    """A labels file that cannot be used; the message is one line naming the file and the problem."""


class SeedLabel(BaseModel):
    """A label the user gave: its name, what it means, and texts that belong to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    description: str = ""
    examples: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("name", "description", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return " ".join(v.split()) if isinstance(v, str) else v

    @field_validator("examples", mode="before")
    @classmethod
    def _listed(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            return [" ".join(x.split()) if isinstance(x, str) else x for x in v
                    if not (isinstance(x, str) and not x.strip())]
        return v

    def text(self) -> str:
        """What the label says about itself, for embedding: its name and description."""
        return f"{self.name}: {self.description}" if self.description else self.name


def check_labels(labels: list[SeedLabel]) -> None:
    """Names must be unique (case and spacing ignored) and must not be "Other"; raises ValueError naming one."""
    seen: dict[str, str] = {}
    for lb in labels:
        key = lb.name.casefold()
        if key == "other":
            raise ValueError(f"label '{lb.name}': tnt adds 'Other' itself; leave it out of the file")
        if key in seen:
            raise ValueError(f"label '{lb.name}' is given twice")
        seen[key] = lb.name


def parse_labels(rows: Any, where: str) -> list[SeedLabel]:
    """Labels from parsed YAML/JSON (a list, or a mapping with a 'labels' list)."""
    if isinstance(rows, dict):
        extra = sorted(set(rows) - {"labels"})
        if extra or "labels" not in rows:
            raise SeedFileError(f"{where}: expected a list of labels or {{labels: [...]}}, found the keys "
                                f"{', '.join(map(str, rows)) or '(none)'}")
        rows = rows["labels"]
    if not isinstance(rows, list) or not rows:
        raise SeedFileError(f"{where}: expected a non-empty list of labels")
    labels = []
    for i, row in enumerate(rows, 1):
        if isinstance(row, str):
            row = {"name": row}
        if not isinstance(row, dict):
            raise SeedFileError(f"{where}: label {i} is a {type(row).__name__}; give a name or "
                                "{name, description, examples}")
        unknown = sorted(set(map(str, row)) - set(FIELDS))
        if unknown:
            raise SeedFileError(f"{where}: label {i} has unknown field(s) {', '.join(unknown)} "
                                f"(known: {', '.join(FIELDS)})")
        try:
            labels.append(SeedLabel.model_validate(row))
        except ValidationError as exc:
            e = exc.errors()[0]
            field = ".".join(str(p) for p in e["loc"]) or "label"
            name = row.get("name") if isinstance(row.get("name"), str) and row.get("name", "").strip() else None
            raise SeedFileError(f"{where}: label {i}{f' ({name!r})' if name else ''}: {field}: {e['msg']}") from None
    try:
        check_labels(labels)
    except ValueError as exc:
        raise SeedFileError(f"{where}: {exc}") from None
    return labels


def _csv_rows(text: str, where: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if "name" not in header:
        raise SeedFileError(f"{where}: the CSV header needs a 'name' column (optional: description, examples)")
    unknown = sorted(set(header) - set(FIELDS))
    if unknown:
        raise SeedFileError(f"{where}: unknown column(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    rows = []
    for line_no, raw in enumerate(reader, 2):
        if None in raw:
            raise SeedFileError(f"{where}: line {line_no} has more fields than the header")
        row = {k.strip(): (v or "") for k, v in raw.items()}
        if not any(v.strip() for v in row.values()):
            continue  # blank line
        if "examples" in row:
            row["examples"] = [x for x in row["examples"].split("|") if x.strip()]
        rows.append(row)
    return rows


def read_labels_file(path: str | Path) -> list[SeedLabel]:
    """The labels of a YAML (.yaml/.yml), JSON (.json) or CSV (.csv) file; SeedFileError with one line if not."""
    p = Path(path)
    where = f"labels file {p}"
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json", ".csv"):
        raise SeedFileError(f"{where}: use a .yaml, .yml, .json or .csv file")
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise SeedFileError(f"{where}: larger than {MAX_FILE_BYTES // 1_000_000} MB; a labels file holds names, "
                                "descriptions and a few examples")
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SeedFileError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise SeedFileError(f"{where} is a directory") from None
    except UnicodeDecodeError:
        raise SeedFileError(f"{where} is not UTF-8 text") from None
    except OSError as exc:
        raise SeedFileError(f"{where} cannot be read ({exc.strerror})") from None
    if suffix == ".csv":
        try:
            return parse_labels(_csv_rows(text, where), where)
        except csv.Error as exc:
            raise SeedFileError(f"{where}: not valid CSV ({exc})") from None
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SeedFileError(f"{where}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise SeedFileError(f"{where}: invalid YAML "
                                f"({getattr(exc, 'problem', None) or 'syntax error'}{at})") from None
    return parse_labels(data, where)


def origins_line(origins: dict[str, str], mode: str) -> str:
    """The run summary's line on given vs discovered labels (origins: `Store.label_origins`)."""
    given = [lid for lid, o in origins.items() if o == "seed"]
    found = [lid for lid, o in origins.items() if o == "discovered"]
    head = f"labels given with --labels ({mode}): {', '.join(given) or 'none'}"
    return head + (f"; discovered: {', '.join(found)}" if found else ("" if mode == "fixed" else "; none discovered"))
