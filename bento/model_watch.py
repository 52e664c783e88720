"""The running service follows the registry: champion and shadow swapped without a restart.

Each worker holds one immutable :class:`Serving` (the champion's scorer, and the shadow's if
the registry names one) and replaces it with one reference assignment. A micro-batch reads the
reference once, so requests in flight finish on the model they started with, and no request
ever waits for a load: a new model is loaded beside the old one, with its own feature reader
(a model on another FeatureService reads that service), and self-checked end to end
(``Scorer.self_check``: the contract's example application through online read, model and
post-processing) before the swap. A model that fails to load or to pass is refused (logged,
counted in ``creditflow_model_refused_total``) and the old one keeps serving; the periodic check
does not retry a refused tag, an admin reload (``POST /admin/reload``) does.

The registry is asked every ``CREDITFLOW_CHAMPION_CHECK_S`` seconds (0: only on an admin
reload). A service served from a built bento does not follow it: the bento pins the model it
was built with (its own model store holds only that one), see bento/service.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from creditflow.bento.scoring import Scorer
from creditflow.config import Settings, get_settings

log = logging.getLogger(__name__)


SWAPS = Counter(
    name="creditflow_model_swaps",
    documentation="Models this worker switched to without a restart, by role (champion, shadow)",
    labelnames=["role"],
)
REFUSED = Counter(
    name="creditflow_model_refused",
    documentation="Models the registry named that failed to load or their self-check, by role: "
    "the previous one kept serving",
    labelnames=["role"],
)


def champion_check_s(settings: Settings | None = None) -> float:
    """How often a worker asks the registry (seconds; 0: never by itself)."""
    return (settings or get_settings()).champion_check_s


@dataclass(frozen=True)
class Serving:
    """What answers (the champion) and what scores beside it unseen (the shadow)."""

    champion: Scorer
    shadow: Scorer | None = None

    @property
    def tags(self) -> tuple[str, str | None]:
        return self.champion.model.tag, self.shadow.model.tag if self.shadow else None


class ModelWatch:
    """Keeps ``serving`` equal to what the registry names, when the models pass their check.

    ``tags()`` returns the registry's (champion, shadow) tags (None: none named); ``load(tag)``
    a new Scorer; ``on_swap(serving)`` is told of each new one.
    """

    def __init__(
        self,
        serving: Serving,
        tags: Callable[[], tuple[str | None, str | None]],
        load: Callable[[str], Scorer],
        interval_s: float,
        on_swap: Callable[[Serving], None] | None = None,
    ) -> None:
        self.serving = serving
        self.tags = tags
        self.load = load
        self.interval_s = interval_s
        self.on_swap = on_swap
        self.refused: dict[str, str] = {}  # tag -> why, not retried until an admin reload
        self._checking = threading.Lock()  # one check at a time: the thread, an admin call
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, retry_refused: bool = False) -> dict:
        """Asks the registry once and swaps if it names other models that pass; returns what
        serves now, what changed and what was refused (tag: reason)."""
        with self._checking:
            champion_tag, shadow_tag = self.tags()
            current = self.serving
            refused: dict[str, str] = {}
            champion = current.champion
            if champion_tag is not None and champion_tag != champion.model.tag:
                champion = self._ready(champion_tag, "champion", retry_refused, refused) or champion
            shadow = current.shadow
            if shadow_tag is None or shadow_tag == champion.model.tag:
                shadow = None  # none named, or it is the champion now
            elif shadow is None or shadow.model.tag != shadow_tag:
                shadow = self._ready(shadow_tag, "shadow", retry_refused, refused)
            swapped = []
            if champion is not current.champion:
                swapped.append("champion")
            if shadow is not current.shadow:
                swapped.append("shadow")
            if swapped:
                serving = Serving(champion, shadow)
                self.serving = serving  # the swap: one assignment
                for role in swapped:
                    SWAPS.labels(role=role).inc()
                log.info("now serving champion %s, shadow %s (was %s, %s)",
                         *serving.tags, *current.tags)  # fmt: skip
                if self.on_swap is not None:
                    self.on_swap(serving)
            champion_now, shadow_now = self.serving.tags
            return {"champion": champion_now, "shadow": shadow_now, "swapped": swapped,
                    "refused": refused}  # fmt: skip

    def _ready(
        self, tag: str, role: str, retry_refused: bool, refused: dict[str, str]
    ) -> Scorer | None:
        """A new scorer for ``tag`` that passed its self-check, or None (refused)."""
        if tag in self.refused and not retry_refused:
            refused[tag] = self.refused[tag]
            return None
        try:
            scorer = self.load(tag)
            scorer.self_check()
        except Exception as err:  # anything wrong with the new model: the old one serves on
            reason = f"{type(err).__name__}: {err}"
            log.exception("%s %s refused (the current model keeps serving)", role, tag)
            REFUSED.labels(role=role).inc()
            self.refused[tag] = refused[tag] = reason
            return None
        self.refused.pop(tag, None)
        return scorer

    def start(self) -> None:
        """Checks every ``interval_s`` in a thread (none when 0)."""
        if self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # the registry unreachable, say: serve on, ask again later
                log.exception("model registry check failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
