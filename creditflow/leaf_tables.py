"""A few rows' margins and reason-code contributions without XGBoost's per-call setup.

Every XGBoost prediction call sets up a new context, and ``Context::Init`` compiles regular
expressions (74% of a one-row call's instructions, callgrind; dmlc/xgboost#12311): 0.08 ms a
margin in a loop, 0.2 ms and more in the serving process, whose caches the framework keeps cold,
and a review or decline takes a second call for its reasons. Yet everything XGBoost computes for
a row here depends only on the leaf the row reaches in each tree: the margin is the base margin
plus those leaves' values, and the approximate (Saabas) contributions are fixed along each path
from the root. So this module finds the leaves with Treelite's GTIL (dmlc's tree-inference
library, reading the same model, categorical splits and default directions included) and adds
up one table row per leaf, built once from the booster's own JSON with XGBoost's float32
arithmetic in XGBoost's order: both answers for a row in 0.04 ms, 0.07 ms with cold caches
(XGBoost's two calls: 0.23 and 0.29 ms), bit for bit XGBoost's.

That equality is checked, not assumed: :func:`leaf_tables` compares the tables with XGBoost on
probe rows when they are built and, should they ever differ (a model or library change),
logs why and leaves every row to XGBoost. tests/model/test_predict.py compares real rows.
"""

from __future__ import annotations

import ctypes
import json
import logging

import numpy as np
import treelite
import xgboost as xgb
from treelite.core import _LIB as _TREELITE
from treelite.core import _check_call
from treelite.gtil.gtil import GTILConfig

from creditflow.booster_calls import BoosterCalls, Contributions, float32_rows

log = logging.getLogger(__name__)

_F32 = np.float32
# Up to this many rows the tables are faster (measured: 144 against 276 µs for 8 rows, margins
# and contributions); GTIL walks a row's trees in 7.5 µs against XGBoost's 3.2, so from about
# 32 rows on XGBoost's own loops win.
FEW_ROWS = 16
# Through PyDLL: the call (11 µs for a row) keeps the interpreter lock. ctypes' CDLL would
# release it, and taking it back mid-request can mean waiting for another thread.
_PREDICT = ctypes.PyDLL(_TREELITE._name).TreeliteGTILPredict
_PREDICT.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64,
                     ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip


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
        self._model = treelite.frontend.from_xgboost(trees_booster)
        self._config = GTILConfig(nthread=1, predict_type="leaf_id")
        self._leaf_type = np.dtype(self._model.output_type)

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """Each row's leaf in every tree, as a row index of the tables: int [n, trees]."""
        matrix = float32_rows(matrix, self.width)
        out = np.empty((len(matrix), len(self.offsets)), dtype=self._leaf_type)
        if len(matrix):
            _check_call(_PREDICT(self._model.handle, matrix.ctypes.data, b"float32",
                                 len(matrix), out.ctypes.data, self._config.handle))  # fmt: skip
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


def probe_rows(booster: xgb.Booster, rows: int = 256, seed: int = 0) -> np.ndarray:
    """Rows that take many paths through the trees: each feature at, just below or away from
    one of its split values, a category code, or missing."""
    frame = booster.trees_to_dataframe()
    rng = np.random.default_rng(seed)
    width = booster.num_features()
    names = booster.feature_names or [f"f{i}" for i in range(width)]
    matrix = np.full((rows, width), np.nan, dtype=_F32)
    for index, name in enumerate(names):
        splits = frame[frame.Feature == name]
        numeric = splits.Split.dropna().to_numpy(dtype=_F32)
        codes = [int(c) for cats in splits.Category.dropna() for c in cats]
        choices = np.concatenate([numeric, np.nextafter(numeric, _F32(-np.inf)),
                                  numeric * _F32(2), np.asarray(codes, dtype=_F32),
                                  np.arange(max(codes, default=-1) + 2, dtype=_F32)])  # fmt: skip
        if len(choices):
            matrix[:, index] = rng.choice(choices, size=rows)
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    return matrix


def leaf_tables(
    booster: xgb.Booster, iteration_range: tuple[int, int], calls: BoosterCalls
) -> LeafTables | None:
    """The booster's leaf tables if they answer exactly as XGBoost does on probe rows; else
    None, with the reason logged (every row then goes through XGBoost)."""
    try:
        tables = LeafTables(booster, iteration_range)
        probes = probe_rows(booster)
        for name in ("margin", "contributions"):
            ours, xgboost = getattr(tables, name)(probes), getattr(calls, name)(probes)
            if not np.array_equal(ours, xgboost):
                raise ValueError(f"their {name} differs from XGBoost's on probe rows")
    except Exception as exc:  # any failure: XGBoost answers alone, as before the tables
        log.warning("leaf tables unused, XGBoost scores every row: %s", exc)
        return None
    return tables
