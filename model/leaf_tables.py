"""A few rows' margins and reason-code contributions without XGBoost's per-call setup.

Every XGBoost prediction call sets up a new context, and ``Context::Init`` compiles regular
expressions (dmlc/xgboost#12311): most of a one-row call, and a review or decline takes a second
call for its reasons (measured in docs/benchmarks.md). Yet everything XGBoost computes for
a row here depends only on the leaf the row reaches in each tree: the margin is the base margin
plus those leaves' values, and the approximate (Saabas) contributions are fixed along each path
from the root. So this module finds the leaves with Treelite's GTIL (dmlc's tree-inference
library, reading the same model, categorical splits and default directions included) and adds
up one table row per leaf, built once from the booster's own JSON with XGBoost's float32
arithmetic in XGBoost's order: both answers for a row several times faster than XGBoost's two
calls, bit for bit XGBoost's.

That equality is checked, not assumed: :func:`leaf_tables` compares the tables with XGBoost's
public API on probe rows when they are built and, should they ever differ or Treelite's library
handle be gone (a model or library change), logs why and leaves every row to XGBoost.
tests/model/test_predict.py compares real rows. ``CREDITFLOW_FAST_PATHS=0`` skips the tables.
"""

from __future__ import annotations

import ctypes
import json
import logging
from functools import cache

import numpy as np
import treelite
import xgboost as xgb

from creditflow.model.booster_calls import Contributions, TreeEvaluator, float32_rows, probe_rows

log = logging.getLogger(__name__)

_F32 = np.float32
# Up to this many rows the tables are faster; GTIL walks a row's trees more slowly than XGBoost,
# so for more rows XGBoost's own loops win (docs/benchmarks.md).
FEW_ROWS = 16


@cache
def _gtil() -> tuple:
    """Treelite's private library handle, its GTILPredict and GTILConfig: looked up when tables
    are first built, so that a Treelite without them only costs the tables (leaf_tables())."""
    from treelite.core import _LIB as _TREELITE
    from treelite.core import _check_call
    from treelite.gtil.gtil import GTILConfig

    # Through PyDLL: the call (microseconds for a row) keeps the interpreter lock. ctypes' CDLL
    # would release it, and taking it back mid-request can mean waiting for another thread.
    predict = ctypes.PyDLL(_TREELITE._name).TreeliteGTILPredict
    predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64,
                        ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
    return predict, _check_call, GTILConfig


def _node_means(
    left: list[int], right: list[int], value: np.ndarray, hessian: np.ndarray
) -> np.ndarray:
    """Each node's cover-weighted mean leaf value, as XGBoost's ``FillNodeMeanValues``."""
    means = np.zeros(len(left), dtype=_F32)

    def fill(node: int) -> np.float32:
        if left[node] == -1:
            means[node] = value[node]
        else:
            total = fill(left[node]) * hessian[left[node]]
            total = _F32(total + fill(right[node]) * hessian[right[node]])
            means[node] = _F32(total / hessian[node])
        return means[node]

    fill(0)
    return means


def _tables(
    trees: list[dict], width: int, base_margin: np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value, contribution) per node of all trees, rows of the leaves only filled, and where
    each tree's nodes start. A leaf's value (the first tree's plus the base margin: XGBoost
    adds the trees one by one to it, so that is its first sum, in float32), and what XGBoost's
    ``CalculateApproxContributions`` adds for a row reaching the leaf."""
    sizes = [len(tree["left_children"]) for tree in trees]
    offsets = np.cumsum([0, *sizes[:-1]])
    values = np.zeros(sum(sizes), dtype=_F32)
    contributions = np.zeros((sum(sizes), width + 1), dtype=_F32)  # the last column: bias
    for tree, offset in zip(trees, offsets, strict=True):
        left, right, feature = tree["left_children"], tree["right_children"], tree["split_indices"]
        value = np.asarray(tree["split_conditions"], dtype=_F32)  # a leaf's value, at a leaf
        means = _node_means(left, right, value, np.asarray(tree["sum_hessian"], dtype=_F32))
        path = np.zeros(width + 1, dtype=_F32)
        path[width] = means[0]
        stack = [(0, path)]
        while stack:
            node, path = stack.pop()
            if left[node] == -1:
                values[offset + node], contributions[offset + node] = value[node], path
                continue
            for child in (left[node], right[node]):
                step = path.copy()
                step[feature[node]] += _F32(means[child] - means[node])
                stack.append((child, step))
    values[: sizes[0]] += base_margin
    return values, contributions, offsets


def _base_margin(learner: dict) -> np.float32:
    """The base score in margin space, as XGBoost's logistic ``ProbToMargin`` computes it."""
    base_score = _F32(float(learner["learner_model_param"]["base_score"].strip("[]")))
    return _F32(-np.log(_F32(1) / base_score - _F32(1)))


class LeafTables:
    """Margins and approximate contributions of one booster's trees, from per-leaf tables."""

    def __init__(self, booster: xgb.Booster, iteration_range: tuple[int, int]) -> None:
        # A slice drops the booster's category names (encoding.py reads them from the whole
        # booster), not its trees' categorical splits.
        trees_booster = booster[int(iteration_range[0]) : int(iteration_range[1])]
        learner = json.loads(trees_booster.save_raw("json"))["learner"]
        kind = (learner["objective"]["name"], learner["gradient_booster"]["name"],
                learner["learner_model_param"]["num_target"])  # fmt: skip
        if kind != ("binary:logistic", "gbtree", "1"):
            raise ValueError(f"leaf tables read binary:logistic gbtree models, not {kind}")
        trees = learner["gradient_booster"]["model"]["trees"]
        self.width = booster.num_features()
        self.base_margin = _base_margin(learner)
        self.values, self.contributions_by_node, self.offsets = _tables(
            trees, self.width, self.base_margin
        )
        self._predict, self._check_call, config = _gtil()
        self._model = treelite.frontend.from_xgboost(trees_booster)
        self._config = config(nthread=1, predict_type="leaf_id")
        self._leaf_type = np.dtype(self._model.output_type)

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """Each row's leaf in every tree, as a row index of the tables: int [n, trees]."""
        matrix = float32_rows(matrix, self.width)
        out = np.empty((len(matrix), len(self.offsets)), dtype=self._leaf_type)
        if len(matrix):
            self._check_call(self._predict(self._model.handle, matrix.ctypes.data, b"float32",
                                           len(matrix), out.ctypes.data,
                                           self._config.handle))  # fmt: skip
        return out.astype(np.int64) + self.offsets

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """The untransformed score (log-odds) of each row: float32 [n]."""
        return self._margin(self.leaves(matrix))

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Approximate (Saabas) contributions: float32 [n, features + 1], the last column the
        bias; each row adds up to its margin."""
        return self._contributions(self.leaves(matrix))

    def evaluate(self, matrix: np.ndarray) -> tuple[np.ndarray, Contributions]:
        """Each row's margin, and the contributions of the rows later selected: the leaves are
        found once for both."""
        leaves = self.leaves(matrix)
        return self._margin(leaves), lambda rows: self._contributions(leaves[rows])

    def _margin(self, leaves: np.ndarray) -> np.ndarray:
        """XGBoost adds the trees one by one in float32 from the base margin; ``cumsum`` adds
        in that same order (the first tree's values hold the base margin)."""
        return np.cumsum(self.values[leaves], axis=1, dtype=_F32)[:, -1]

    def _contributions(self, leaves: np.ndarray) -> np.ndarray:
        out = self.contributions_by_node[leaves].sum(axis=1, dtype=_F32)
        out[:, -1] += self.base_margin
        return out


def leaf_tables(
    booster: xgb.Booster,
    iteration_range: tuple[int, int],
    calls: TreeEvaluator,
    build: type[LeafTables] = LeafTables,
) -> LeafTables | None:
    """The booster's leaf tables if they answer exactly as ``calls`` (XGBoost's public API, in
    the Predictor) does on probe rows; else None, with the reason logged (every row then goes
    through XGBoost). ``build``: the class to check, for tests."""
    try:
        tables = build(booster, iteration_range)
        probes = probe_rows(booster)
        for name in ("margin", "contributions"):
            ours, xgboost = getattr(tables, name)(probes), getattr(calls, name)(probes)
            if not np.array_equal(ours, xgboost):
                raise ValueError(f"their {name} differs from XGBoost's on probe rows")
    except Exception as exc:  # any failure: XGBoost answers alone, as before the tables
        log.warning("leaf tables unused, XGBoost scores every row: %s", exc)
        return None
    return tables
