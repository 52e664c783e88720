"""What every HTML + JSON report shares (training's evaluation, monitoring's runs): strict JSON
values, cell formatting, figures drawn off pyplot and embedded as PNG. matplotlib is imported
only by the functions that draw (the training and monitoring extras have it)."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def clean(value: Any) -> Any:
    """Strict JSON values: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # timestamps, paths: readable rather than an error


def fmt(value: Any) -> str:
    """A value as a report cell shows it."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and not 1e-4 <= abs(value) < 1e6:
            return f"{value:.4g}"
        return f"{value:.4f}"
    return str(value)


def escaped(value: Any) -> str:
    """:func:`fmt`, HTML-escaped."""
    return html.escape(fmt(value))


def figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas, outside pyplot: nothing global to leak or close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure, dpi: int = 90) -> str:
    """The figure as an embedded ``<img>``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{encoded}" alt="plot">'
