"""creditflow: credit-risk scoring on a Feast feature store.

Importing any creditflow package sets OpenMP's wait policy to passive before XGBoost loads
its OpenMP runtime: with the default (spinning) policy, two XGBoost threads on a 2-vCPU
machine trained many times slower than one (docs/benchmarks.md); passive waiting removes the
penalty. A value set by the user wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
