"""Named changes of the demo world for the lifecycle simulation, each with its expected outcome.

A scenario changes either the world itself (``world``: keyword hooks of
:func:`creditflow.demo_world.generator.generate_world`, so the truth that makes ``loan_status``
changes with it) or only what an upstream system reports about it (``upstream``: the
applications as received, the truth untouched). ``expect`` declares what the loop must show,
and the simulation's report checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

# Expected outcomes (what the simulation checks each run against).
NO_ALERT = "no_alert"  # the control: no alert at all
BROKEN_DATA = "broken_data"  # an alert naming `column` within `alert_within_days`, no retrain
COVARIATE = "covariate_drift"  # a drift alert; a promotion only where the gate says so
CONCEPT = "concept_drift"  # accuracy falls once labels arrive, alert, retrain, promote, recover

NEW_INTENT = "CRYPTO"  # not one of the contract's loan intents


def _income_in_thousands(applications: pd.DataFrame) -> pd.DataFrame:
    out = applications.copy()
    out["person_income"] = (out["person_income"] // 1000).astype("int64")
    return out


def _new_intent(applications: pd.DataFrame, share: float = 0.3) -> pd.DataFrame:
    out = applications.copy()
    picked = (out["loan_id"] % 10) < round(share * 10)  # deterministic, about `share`
    out["loan_intent"] = out["loan_intent"].where(~picked, NEW_INTENT)
    return out


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: str
    world: dict = field(default_factory=dict)  # generate_world keyword hooks from the day on
    upstream: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # applications as received
    column: str | None = None  # the column an alert must name (broken data)
    # The monitor sections whose alerts answer this change (empty: any): a concept drift shows
    # in realized accuracy, not in the inputs; another incident's alerts must not count.
    sections: tuple[str, ...] = ()
    alert_within_days: int | None = None
    lasts_days: int | None = None  # an incident upstream is fixed after this; None: for good


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "none", "control run: the world does not change", NO_ALERT),
        Scenario(
            "income_units",
            "an upstream system reports person_income in thousands of USD",
            BROKEN_DATA,
            upstream=_income_in_thousands,
            column="person_income",
            alert_within_days=2,
            lasts_days=10,
        ),
        Scenario(
            "new_category",
            f"a new loan_intent ({NEW_INTENT}) appears upstream in about 30% of applications; "
            "the contract rejects them",
            BROKEN_DATA,
            upstream=_new_intent,
            column="loan_intent",
            alert_within_days=2,
            lasts_days=10,
        ),
        Scenario(
            "income_shift",
            "applicants' true incomes fall by 40% (covariate drift)",
            COVARIATE,
            world={"income_scale": 0.6},
            sections=("drift",),
        ),
        Scenario(
            "rate_regime",
            "the interest rate's effect on default reverses (concept drift): rate weight "
            "0.12 -> -2.5 per point",
            CONCEPT,
            # Strong enough to show (measured): at -0.45 the approved loans, the only ones with
            # outcomes, barely changed (default rate ~3-4%, realized AUC 0.03-0.05 lower: under
            # the alert's 0.07) and the new world ranked worse for any model (~0.80 trained on
            # it, 0.86 before: "recovered" was out of reach). At -2.5 the approved loans' ranking
            # inverts (realized AUC ~0.35) and a model on ~1,000 new outcomes ranks at ~0.9.
            world={"rate_weight": -2.5},
            sections=("accuracy",),
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Drift:
    scenario: Scenario
    day: int


def parse_drift(text: str) -> Drift:
    """``SCENARIO@DAY`` (``rate_regime@80``); ValueError naming what is wrong."""
    name, at, day = text.partition("@")
    if name not in SCENARIOS:
        raise ValueError(f"--drift {text!r}: unknown scenario {name!r}; one of {sorted(SCENARIOS)}")
    if not at or not day.strip().isdigit():
        raise ValueError(f"--drift {text!r}: expected SCENARIO@DAY with DAY a whole number >= 0")
    return Drift(SCENARIOS[name], int(day))


def active(drifts: list[Drift], day: int) -> list[Scenario]:
    """The scenarios in force on ``day`` (each from its day on, an incident until fixed)."""
    return [
        d.scenario
        for d in drifts
        if d.day <= day and (d.scenario.lasts_days is None or day < d.day + d.scenario.lasts_days)
    ]


def world_hooks(drifts: list[Drift], day: int) -> dict:
    """The generator hooks of every scenario in force on ``day`` (later drifts win)."""
    hooks: dict = {}
    for scenario in active(drifts, day):
        hooks.update(scenario.world)
    return hooks


def as_received(drifts: list[Drift], day: int, applications: pd.DataFrame) -> pd.DataFrame:
    """The applications as the upstream systems in force on ``day`` report them."""
    for scenario in active(drifts, day):
        if scenario.upstream is not None:
            applications = scenario.upstream(applications)
    return applications
