"""What one monitor run looks at: a model, a time window ending at ``as_of``, and a database.

Every check reads through this and only rows recorded up to ``as_of`` (predictions with
``at <= as_of``, labels with ``received_at <= as_of``, service statistics of windows that
started before it), so a scheduled run, a backfill and a simulation give the same answer for
the same ``as_of``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from creditflow.config import Settings
from creditflow.model.registry import LoadedModel


@dataclass
class Window:
    settings: Settings
    engine: sa.Engine
    model_tag: str
    start: datetime  # exclusive
    as_of: datetime  # inclusive: the end of the window
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def model(self) -> LoadedModel:
        """The model judged (its contract, metadata and calibrated booster)."""
        from creditflow.model.registry import load

        return load(self.model_tag, nthread=None)

    @cached_property
    def model_dir(self) -> Path:
        """The model's folder in the store (reference.parquet, report.json)."""
        import bentoml

        return Path(bentoml.models.get(self.model_tag).path)
