"""The demo world grown one simulated day at a time.

Day 0's past is one ordinary demo world (the history a first model trains on). Each later day is
a world of its own with ``loan_days=1`` and the same zipcode table (``zip_seed``): that day's
applicants, with their credit bureau records, and each loan's true outcome drawn by the demo
world's default model (the mechanism that makes ``loan_status``), so a scenario that changes the
world changes the truth. Loan ids are made unique across days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from creditflow.contract import APPLICATIONS, CREDIT_HISTORY, LOANS
from creditflow.demo_world import scenarios
from creditflow.demo_world.generator import generate_world

DAY_ID_SPAN = 10_000_000  # loan ids of day d: d * DAY_ID_SPAN + 1, ...


@dataclass(frozen=True)
class Day:
    number: int
    end: datetime  # the day's applications fall in (end - 1 day, end]
    applications: pd.DataFrame  # as received upstream: APPLICATIONS columns, loan_id, time
    truth: pd.DataFrame  # loan_id, loan_status (the outcome), event_timestamp
    credit_history: pd.DataFrame  # the applicants' bureau records, oldest first


class SimulatedWorld:
    """Deterministic from ``seed``: the same arguments give the same days."""

    def __init__(self, start: datetime, per_day: int, seed: int, drifts: list) -> None:
        if per_day < 1:
            raise ValueError(f"per_day must be >= 1, got {per_day}")
        self.start = start
        self.per_day = per_day
        self.seed = seed
        self.drifts = drifts
        self.zip_seed = seed + 7_919

    def history(self, loans: int) -> dict[str, pd.DataFrame]:
        """The year before day 0 (``loans`` loans): what the first model trains on."""
        return generate_world(loans, seed=self.seed, end=self.start, zip_seed=self.zip_seed)

    def day(self, number: int) -> Day:
        """Day ``number`` (1-based): its applications end at ``start + number days``."""
        end = self.start + timedelta(days=number)
        world = generate_world(
            self.per_day,
            seed=self.seed * 100_003 + number,
            end=end,
            dirty_share=0.0,
            loan_days=1,
            zip_seed=self.zip_seed,
            **scenarios.world_hooks(self.drifts, number),
        )
        loans = world[LOANS.name]
        loans["loan_id"] = loans["loan_id"] + number * DAY_ID_SPAN
        received = scenarios.as_received(self.drifts, number, loans)
        columns = ["loan_id", *APPLICATIONS.names, "event_timestamp"]
        credit = world[CREDIT_HISTORY.name].sort_values("event_timestamp", kind="stable")
        return Day(
            number=number,
            end=end,
            applications=received[columns].reset_index(drop=True),
            truth=loans[["loan_id", "loan_status", "event_timestamp"]].reset_index(drop=True),
            credit_history=credit.reset_index(drop=True),
        )
