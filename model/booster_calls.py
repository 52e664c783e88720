"""XGBoost's own C prediction calls, with their arguments encoded once instead of per call.

Scoring one application spent more time in xgboost's Python wrapper than in the trees:
``inplace_predict`` re-checks its input, re-encodes its arguments as JSON and builds ctypes
types on every call (about half of its cost), and contributions went through a ``DMatrix``
with feature names and types. These functions make the same calls of XGBoost's C API
(``c_api.h``: ``XGBoosterPredictFromDense``, ``XGDMatrixCreateFromDense``,
``XGBoosterPredictFromDMatrix``) through the library the ``xgboost`` package has loaded, at
about half the cost (docs/benchmarks.md).

The trees decide their categorical splits themselves, so a float32 matrix of category codes
(``preprocessing/encoding.py``) needs no feature types: tests/model/test_predict.py checks both
calls against the public API, categories and missing values included.

These are XGBoost internals (``xgboost.core._LIB`` and the C API's JSON arguments), so they are
checked where they are used: :func:`booster_calls` compares them with the public API on probe
rows and, should they differ or be missing, logs why and returns :class:`PublicCalls`, the same
interface over ``inplace_predict`` and ``predict``. ``CREDITFLOW_FAST_PATHS=0`` skips them.
"""

from __future__ import annotations

import ctypes
import json
import logging
from collections.abc import Callable

import numpy as np
import xgboost as xgb

try:  # private: a later XGBoost may move them (booster_calls() then answers with PublicCalls)
    from xgboost.core import _LIB, _check_call, c_bst_ulong
except ImportError:  # pragma: no cover - depends on the installed XGBoost
    _LIB = _check_call = c_bst_ulong = None

log = logging.getLogger(__name__)

_F32 = np.float32

# The contributions of the rows selected (an index array), as ``contributions`` gives them.
Contributions = Callable[[np.ndarray], np.ndarray]

# XGBoosterPredictFromDMatrix's prediction types (c_api.h).
_MARGIN = 1
_APPROX_CONTRIBUTIONS = 3


def _arguments(**kwargs: object) -> bytes:
    return json.dumps(kwargs).encode()


def _array_interface(matrix: np.ndarray) -> bytes:
    """The numpy array interface of a C-contiguous float32 matrix, as the C API reads it."""
    pointer, _ = matrix.__array_interface__["data"]
    return b'{"data": [%d, true], "shape": [%d, %d], "typestr": "<f4", "version": 3}' % (
        pointer,
        matrix.shape[0],
        matrix.shape[1],
    )


def float32_rows(matrix: np.ndarray, width: int) -> np.ndarray:
    """The C-contiguous float32 rows both tree evaluators read, ``width`` features each."""
    if matrix.ndim != 2 or matrix.shape[1] != width:
        raise ValueError(f"expected a matrix of {width} features, got {matrix.shape}")
    return np.ascontiguousarray(matrix, dtype=np.float32)


class BoosterCalls:
    """Margins and approximate contributions of one booster over float32 feature matrices."""

    def __init__(
        self, booster: xgb.Booster, iteration_range: tuple[int, int], nthread: int | None
    ) -> None:
        if _LIB is None:
            raise ImportError("xgboost.core no longer has _LIB, _check_call or c_bst_ulong")
        # Looked up now: a missing symbol fails here, at load time, not in a request.
        self._predict_dense = _LIB.XGBoosterPredictFromDense
        self._predict_dmatrix = _LIB.XGBoosterPredictFromDMatrix
        self._create_dense = _LIB.XGDMatrixCreateFromDense
        self._free = _LIB.XGDMatrixFree
        self.booster = booster
        self.width = booster.num_features()
        begin, end = (int(i) for i in iteration_range)
        trees = {"training": False, "iteration_begin": begin, "iteration_end": end,
                 "strict_shape": False}  # fmt: skip
        self._margin_args = _arguments(type=_MARGIN, missing=float("nan"), cache_id=0, **trees)
        self._contribution_args = _arguments(type=_APPROX_CONTRIBUTIONS, **trees)
        self._matrix_args = _arguments(missing=float("nan"), nthread=nthread or -1)

    def _predicted(self, call, *args: object) -> np.ndarray:
        """Runs a C predict call; copies its answer out of the booster's own buffer."""
        shape = ctypes.POINTER(c_bst_ulong)()
        dims = c_bst_ulong()
        values = ctypes.POINTER(ctypes.c_float)()
        _check_call(call(*args, ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(values)))
        out = np.empty([shape[i] for i in range(dims.value)], dtype=np.float32)
        ctypes.memmove(out.ctypes.data, values, out.nbytes)
        return out

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """The untransformed score (log-odds) of each row: float32 [n]."""
        matrix = float32_rows(matrix, self.width)
        if not len(matrix):
            return np.empty(0, dtype=np.float32)
        out = self._predicted(
            self._predict_dense, self.booster.handle, _array_interface(matrix),
            self._margin_args, ctypes.c_void_p(),
        )  # fmt: skip
        return out.reshape(len(matrix))

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Approximate (Saabas) contributions: float32 [n, features + 1], the last column the
        bias; each row adds up to its margin."""
        matrix = float32_rows(matrix, self.width)
        if not len(matrix):
            return np.empty((0, self.width + 1), dtype=np.float32)
        handle = ctypes.c_void_p()
        _check_call(
            self._create_dense(_array_interface(matrix), self._matrix_args, ctypes.byref(handle))
        )
        try:
            out = self._predicted(
                self._predict_dmatrix, self.booster.handle, handle,
                self._contribution_args,
            )  # fmt: skip
        finally:
            _check_call(self._free(handle))
        return out.reshape(len(matrix), self.width + 1)

    def evaluate(self, matrix: np.ndarray) -> tuple[np.ndarray, Contributions]:
        """Each row's margin, and the contributions of the rows later selected."""
        return self.margin(matrix), lambda rows: self.contributions(matrix[rows])


class PublicCalls:
    """The same answers through XGBoost's public API: ``inplace_predict`` for margins
    (``predict_type="margin"``), a ``DMatrix`` with the booster's feature names and types for
    contributions."""

    def __init__(
        self, booster: xgb.Booster, iteration_range: tuple[int, int], nthread: int | None
    ) -> None:
        self.booster = booster
        self.width = booster.num_features()
        self.iteration_range = tuple(int(i) for i in iteration_range)
        self.nthread = nthread or -1

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """The untransformed score (log-odds) of each row: float32 [n]."""
        matrix = float32_rows(matrix, self.width)
        if not len(matrix):
            return np.empty(0, dtype=np.float32)
        out = self.booster.inplace_predict(
            matrix, predict_type="margin", iteration_range=self.iteration_range, missing=np.nan
        )
        return np.asarray(out, dtype=np.float32).reshape(len(matrix))

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Approximate (Saabas) contributions: float32 [n, features + 1], the last column the
        bias; each row adds up to its margin."""
        matrix = float32_rows(matrix, self.width)
        if not len(matrix):
            return np.empty((0, self.width + 1), dtype=np.float32)
        data = xgb.DMatrix(matrix, missing=np.nan, feature_names=self.booster.feature_names,
                           feature_types=self.booster.feature_types, enable_categorical=True,
                           nthread=self.nthread)  # fmt: skip
        out = self.booster.predict(data, pred_contribs=True, approx_contribs=True,
                                   iteration_range=self.iteration_range)  # fmt: skip
        return np.asarray(out, dtype=np.float32).reshape(len(matrix), self.width + 1)

    def evaluate(self, matrix: np.ndarray) -> tuple[np.ndarray, Contributions]:
        """Each row's margin, and the contributions of the rows later selected."""
        return self.margin(matrix), lambda rows: self.contributions(matrix[rows])


# Either evaluator of XGBoost's trees: the same methods, the same answers.
TreeEvaluator = BoosterCalls | PublicCalls


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


def differs(fast: TreeEvaluator, expected: dict[str, np.ndarray], probes: np.ndarray) -> str | None:
    """Why ``fast`` does not answer the probe rows exactly as ``expected`` (by method), or None."""
    for name, answer in expected.items():
        if not np.array_equal(getattr(fast, name)(probes), answer):
            return f"their {name} differs from XGBoost's public API on probe rows"
    return None


def booster_calls(
    booster: xgb.Booster,
    iteration_range: tuple[int, int],
    nthread: int | None,
    calls: type[BoosterCalls] = BoosterCalls,
) -> TreeEvaluator:
    """The C calls if they answer probe rows exactly as the public API does; else, with the
    reason logged, :class:`PublicCalls` (``calls``: the class to check, for tests)."""
    public = PublicCalls(booster, iteration_range, nthread)
    probes = probe_rows(booster)
    expected = {"margin": public.margin(probes), "contributions": public.contributions(probes)}
    try:
        fast = calls(booster, iteration_range, nthread)
        reason = differs(fast, expected, probes)
    except Exception as exc:  # any failure (a symbol gone, a changed signature): public API
        reason = f"{type(exc).__name__}: {exc}"
    if reason is None:
        return fast
    log.warning("XGBoost C calls unused, its public API scores every row: %s", reason)
    return public
