"""One pydantic model for a taxonomy job: what the CLI flags fill in and what a run stores in `runs.config`."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from workflow.pii import is_local_model
from workflow.seeds import SeedLabel, check_labels, read_labels_file

LOCAL_MODEL = "local/smollm2"


class JobConfig(BaseModel):
    """Settings of one run. Defaults follow TnT-LLM (minibatches of 200, label caps, word caps)."""

    use_case: str = Field(min_length=3, description="What the taxonomy is for.")
    model: str = Field(LOCAL_MODEL, description="Any litellm model string; default: the embedded model.")
    summary_model: str | None = Field(None, description="Model for summaries (default: --model).")
    taxonomy_model: str | None = Field(None, description="Model for taxonomy steps (default: --model).")
    label_model: str | None = Field(None, description="Model for pseudo-labels (default: --model).")
    api_base: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")

    batch_size: int = Field(200, ge=2, description="summaries per taxonomy minibatch")
    taxonomy_sample: int = Field(600, ge=2, description="documents summarised for taxonomy generation (phase 1)")
    label_sample: int = Field(1000, ge=2, description="documents pseudo-labeled by the LLM (phase 2)")
    max_labels: int = Field(10, ge=2, le=100, description="Most labels in the taxonomy.")
    proposal: Literal["clusters", "minibatch"] = Field(
        "clusters", description="clusters: embed and over-cluster the sample, the model names and merges clusters; "
        "minibatch: the model writes the taxonomy from minibatches of summaries (the TnT-LLM paper)")
    cluster_factor: float = Field(2.5, ge=1, le=10, description="clusters per label before merging")
    shortlist: int = Field(5, ge=0, description="labels offered per document when labeling, nearest by embedding "
                           "(0: all labels)")
    teacher: Literal["auto", "llm", "nearest"] = Field(
        "auto", description="whose labels the classifier learns from: the LLM's (the paper), or each document's "
        "nearest label by embedding (no label calls); auto: nearest for the embedded local model, which labels worse "
        "than its own embeddings (benchmarks/README.md), the LLM's for any other model")
    label_selection: Literal["random", "active"] = Field(
        "random", description="which documents the LLM labels: a random sample (the paper), or a random quarter "
        "then rounds of the documents a fast classifier on the labels so far is least sure of, spread over the "
        "embedding space (workflow/classify/active.py); the same number of labels either way")
    multi_label: bool = Field(False, description="the LLM may give a document several labels; one-vs-rest classifier")
    max_labels_per_doc: int = Field(3, ge=2, le=10, description="most labels per document in multi-label mode")
    name_max_words: int = Field(10, ge=1)
    description_max_words: int = Field(30, ge=3)
    summary_max_words: int = Field(20, ge=3)
    summaries: Literal["auto", "always", "never"] = Field(
        "auto", description="whether the cluster-naming prompts show summaries of their documents (one model call "
        "per document shown) or the documents cut to 60 words; auto: summaries only when the summary model is not "
        "the embedded local model, whose summaries did not make better names (benchmarks/README.md); the minibatch "
        "proposal (the paper) always summarises")
    max_doc_tokens: int = Field(600, ge=16, description="documents are cut to this many tokens in prompts")

    seed: int = Field(0, description="Seed for sampling and models.")
    temperature: float = 0.0
    concurrency: int = Field(8, ge=1, description="Model calls in flight at once.")
    max_attempts: int = Field(4, ge=1, description="Attempts per model call before its document fails.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds one model call may take before it is retried.")
    max_cost: float | None = Field(None, ge=0, description="Stop cleanly before spending more than this (USD).")
    structured_output: str = Field("auto", description="auto | json_schema | json_object | tools | prompt "
                                   "(workflow/llm/structured.py)")

    embedding_model: str = Field("minilm-int8", description="Embeddings for clusters, shortlists and the classifier: "
                                 "minilm-int8 (bundled), static-minilm (the fast tier: ~80x the texts/s, ~5 points "
                                 "less accurate; docs/serving.md), st:/path/to/sentence-transformers-dir, static:/dir, "
                                 "or litellm:<provider model> (e.g. litellm:text-embedding-3-small).")
    algorithms: list[str] = ["logreg"]
    test_size: float = Field(0.2, gt=0, lt=1)
    noise_aware: bool = Field(True, description="estimate the LLM labels' noise and leave suspects out of the fit")
    recheck: float = Field(0.0, ge=0, le=1, description="share of the teacher's labels, most suspect first by "
                           "the noise estimate, sent back to the label model once with two choices: the label they "
                           "have and the classifier's alternative (0: off)")
    auto_approve: bool = Field(True, description="Pause for human review before labeling?")
    levels: int = Field(1, ge=1, le=2, description="2: group the final labels under at most max_parents parents")
    max_parents: int = Field(8, ge=2, le=50, description="most level-2 parents of a two-level taxonomy")
    time_field: str | None = Field(None, description="document field holding dates (kept in the documents' meta): "
                                   "the review page and `tnt report` chart label share over time")
    seed_labels: list[SeedLabel] = Field(default_factory=list, description="labels the user gave (`--labels FILE`, "
                                         "workflow/seeds.py): kept with ids L1..Ln in file order")
    labels_file: str | None = Field(None, description="where seed_labels were read from (a note: the labels "
                                    "themselves are stored here, so a moved file does not matter)")
    label_mode: Literal["seeded", "fixed"] = Field(
        "seeded", description="with seed_labels: seeded = proposal adds labels up to max_labels beside the given "
        "ones; fixed = zero-shot, no proposal, the given labels and Other go straight to labeling")
    redact_pii: bool = Field(False, description="scrub e-mails, phone, card numbers and IBANs from every prompt to a "
                             "model that is not the embedded one (workflow/pii.py); stored documents keep the text")

    @field_validator("use_case")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @field_validator("structured_output")
    @classmethod
    def _known_mode(cls, v: str) -> str:
        from workflow.llm.structured import CHOICES

        if v not in CHOICES:
            raise ValueError(f"choose one of {', '.join(CHOICES)}")
        return v

    @field_validator("embedding_model")
    @classmethod
    def _known_embedder(cls, v: str) -> str:
        from workflow.classify.embed_base import validate_embedder_name  # the one list of embedder names

        return validate_embedder_name(v)

    @model_validator(mode="before")
    @classmethod
    def _labels_from_file(cls, data: Any) -> Any:
        """`seed_labels` may be a labels file's path (the Python API's `seed_labels="labels.yaml"`): its content
        is read here and stored, the path kept as `labels_file`."""
        if isinstance(data, dict) and isinstance(data.get("seed_labels"), (str, os.PathLike)):
            path = data["seed_labels"]
            data = {**data, "seed_labels": read_labels_file(path), "labels_file": data.get("labels_file") or str(path)}
        return data

    @model_validator(mode="after")
    def _seeds_fit(self) -> JobConfig:
        if self.label_mode == "fixed" and not self.seed_labels:
            raise ValueError("--label-mode fixed needs the labels: give --labels FILE")
        if len(self.seed_labels) > self.max_labels:
            raise ValueError(f"--labels: {len(self.seed_labels)} labels given, more than --max-labels "
                             f"{self.max_labels}; raise --max-labels")
        check_labels(list(self.seed_labels))
        if self.redact_pii and self.embedding_model.startswith("litellm:"):
            raise ValueError("--redact-pii: --embedder litellm:... sends documents unscrubbed to a provider for "
                             "embedding; use minilm-int8 or st:/path")
        return self

    def label_teacher(self) -> str:
        """'llm' or 'nearest', with auto resolved for the label step's model."""
        if self.teacher != "auto":
            return self.teacher
        return "nearest" if self.embedded("label") else "llm"

    def uses_summaries(self) -> bool:
        """Whether cluster naming shows summaries, with auto resolved for the summary step's model."""
        if self.summaries != "auto":
            return self.summaries == "always"
        return not self.embedded("summarize")

    def embedded(self, step: str) -> bool:
        """Whether the step's model is the embedded one (`local/`): what several defaults are measured against."""
        return is_local_model(self.model_for(step))

    def model_for(self, step: str) -> str:
        """The model for a step: a step-specific model wins over the general one."""
        specific = {"summarize": self.summary_model, "taxonomy": self.taxonomy_model, "label": self.label_model,
                    "recheck": self.label_model}
        return specific.get(step) or self.model
