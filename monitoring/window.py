"""What one monitor run looks at: a model, a time window ending at ``as_of``, and a database.

Every check reads through this and only rows recorded up to ``as_of`` (predictions with
``at <= as_of``, labels with ``received_at <= as_of``, service statistics of windows that
started before it), so a scheduled run, a backfill and a simulation give the same answer for
the same ``as_of``.

What depends on the model alone (the loaded model, its development sample, that sample's
scores and bins) is kept per process in :attr:`Window.shared`, for the next windows of the same
model: a stored model never changes under its tag, and a process that monitors often (a
scheduler, a backfill over many days) would otherwise rebuild it all on every run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from creditflow.config import Settings
from creditflow.model.registry import LoadedModel

T = TypeVar("T")
# Models whose shared values a process keeps (the least recently used beyond are dropped).
SHARED_MODELS = 4


@functools.lru_cache(maxsize=SHARED_MODELS)
def _shared(model_store: str, model_tag: str) -> dict[str, Any]:
    return {}


@dataclass
class Window:
    settings: Settings
    engine: sa.Engine
    model_tag: str
    start: datetime  # exclusive
    as_of: datetime  # inclusive: the end of the window
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def shared(self) -> dict[str, Any]:
        """Values of this model alone, shared by this process's windows of the same model (in
        the same model store); treat them as read-only."""
        return _shared(str(self.settings.bentoml_home), self.model_tag)

    def of_model(self, key: str, build: Callable[[], T]) -> T:
        """``shared[key]``, built on first use."""
        shared = self.shared
        if key not in shared:
            shared[key] = build()
        return shared[key]

    @cached_property
    def model(self) -> LoadedModel:
        """The model judged (its contract, metadata and calibrated booster)."""
        from creditflow.model.registry import load

        return self.of_model("model", lambda: load(self.model_tag, nthread=None))

    @cached_property
    def model_dir(self) -> Path:
        """The model's folder in the store (reference.parquet, report.json)."""

        def find() -> Path:
            import bentoml

            return Path(bentoml.models.get(self.model_tag).path)

        return self.of_model("model_dir", find)
