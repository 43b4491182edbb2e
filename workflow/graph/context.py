"""What every node needs besides the state: the job's settings, the store and the gateway."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from workflow.config import JobConfig
from workflow.llm.gateway import Gateway
from workflow.store import Store

log = logging.getLogger("tnt")


class RunFailed(RuntimeError):
    """A step cannot go on (e.g. no valid taxonomy after all retries); the message says what to do."""


@dataclass
class RunContext:
    run_id: str
    corpus: str
    config: JobConfig
    store: Store
    gateway: Gateway
    show_progress: bool = True

    def stage(self, name: str) -> None:
        self.store.set_run_stage(self.run_id, name)
