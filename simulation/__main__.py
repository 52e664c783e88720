"""`python -m creditflow.simulation` (until `creditflow simulate` is wired): same options."""

from __future__ import annotations

import argparse
import json

from creditflow.simulation.simulate import simulate

parser = argparse.ArgumentParser(prog="python -m creditflow.simulation")
parser.add_argument("--days", type=int, default=120)
parser.add_argument("--per-day", type=int, default=1000)
parser.add_argument("--drift", action="append", default=[])
parser.add_argument("--label-delay", type=int, default=30)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--home", default=None)
parser.add_argument("--history-loans", type=int, default=None)
parser.add_argument("--exploration-share", type=float, default=None)
parser.add_argument("--retrain-every", type=int, default=None)
parser.add_argument("--train-trials", type=int, default=None)
parser.add_argument("--json", action="store_true")
args = parser.parse_args()
extra = {
    k: v
    for k, v in {
        "history_loans": args.history_loans,
        "exploration_share": args.exploration_share,
        "retrain_every": args.retrain_every,
        "train_trials": args.train_trials,
    }.items()
    if v is not None
}
summary = simulate(
    args.days,
    args.per_day,
    args.drift,
    args.label_delay,
    args.seed,
    args.home,
    quiet=args.json,
    **extra,
)
print(json.dumps(summary, default=str) if args.json else json.dumps(summary, indent=1, default=str))
