"""Progress of long jobs (done/total, rate, ETA, epoch, loss, log lines), the same way everywhere.

Inside an RQ job it is written to the job's meta, which GET /jobs/{id} and `lensguard jobs` read; run from
the CLI it also prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rq import get_current_job

log = logging.getLogger(__name__)
MAX_LOG_LINES = 200


class JobProgress:
    def __init__(self, echo: Callable[[str], None] | None = None, min_interval: float = 0.5):
        self.job = get_current_job()
        self.echo = echo
        self.min_interval = min_interval
        self._state: dict = {}
        self._started = time.monotonic()
        self._saved = 0.0
        self._lines: list[str] = list(self.job.meta.get("log", [])) if self.job else []

    def stage(self, name: str, total: int | None = None) -> None:
        self._state = {"stage": name, "done": 0, "total": total}
        self._started = time.monotonic()
        self.log(f"{name}" + (f" ({total})" if total else ""))

    def update(self, done: int | None = None, advance: int = 0, **fields) -> None:
        state = self._state
        state["done"] = (state.get("done", 0) + advance) if done is None else done
        state.update(fields)
        elapsed = max(time.monotonic() - self._started, 1e-9)
        state["rate"] = round(state["done"] / elapsed, 3)
        total = state.get("total")
        if total and state["done"]:
            state["eta_s"] = round((total - state["done"]) / max(state["rate"], 1e-9), 1)
        self._save()
        if self.echo:
            self.echo(self.render())

    def render(self) -> str:
        state = self._state
        done, total = state.get("done", 0), state.get("total")
        bar = ""
        if total:
            filled = int(30 * done / total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
        extras = " ".join(f"{k}={v}" for k, v in state.items() if k in ("epoch", "loss", "val_roc_auc"))
        eta = f" eta {state['eta_s']:.0f}s" if state.get("eta_s") is not None else ""
        return f"{state.get('stage', '')}: {bar}{state.get('rate', 0):.2f}/s{eta} {extras}".rstrip()

    def log(self, message: str) -> None:
        log.info(message)
        self._lines = [*self._lines, f"{time.strftime('%H:%M:%S')} {message}"][-MAX_LOG_LINES:]
        self._save(force=True)
        if self.echo:
            self.echo(message)

    def _save(self, force: bool = False) -> None:
        if self.job is None or (not force and time.monotonic() - self._saved < self.min_interval):
            return
        self.job.meta["progress"] = dict(self._state)
        self.job.meta["log"] = self._lines
        self.job.save_meta()
        self._saved = time.monotonic()
