"""XGBoost's own C prediction calls, with their arguments encoded once instead of per call.

Scoring one application spent more time in xgboost's Python wrapper than in the trees:
``inplace_predict`` re-checks its input, re-encodes its arguments as JSON and builds ctypes
types on every call (about half of its 0.15 ms), and contributions went through a ``DMatrix``
with feature names and types (0.47 ms a row in all). These functions make the same calls of
XGBoost's C API (``c_api.h``: ``XGBoosterPredictFromDense``, ``XGDMatrixCreateFromDense``,
``XGBoosterPredictFromDMatrix``) through the library the ``xgboost`` package has loaded:
0.07 ms for a margin, 0.15 ms for contributions.

The trees decide their categorical splits themselves, so a float32 matrix of category codes
(``creditflow/encoding.py``) needs no feature types: tests/model/test_predict.py checks both
calls against the public API, categories and missing values included.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable

import numpy as np
import xgboost as xgb
from xgboost.core import _LIB, _check_call, c_bst_ulong

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
            _LIB.XGBoosterPredictFromDense, self.booster.handle, _array_interface(matrix),
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
            _LIB.XGDMatrixCreateFromDense(
                _array_interface(matrix), self._matrix_args, ctypes.byref(handle)
            )
        )
        try:
            out = self._predicted(
                _LIB.XGBoosterPredictFromDMatrix, self.booster.handle, handle,
                self._contribution_args,
            )  # fmt: skip
        finally:
            _check_call(_LIB.XGDMatrixFree(handle))
        return out.reshape(len(matrix), self.width + 1)

    def evaluate(self, matrix: np.ndarray) -> tuple[np.ndarray, Contributions]:
        """Each row's margin, and the contributions of the rows later selected."""
        return self.margin(matrix), lambda rows: self.contributions(matrix[rows])
