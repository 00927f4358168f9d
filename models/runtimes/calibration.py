"""Batch size from measurement: frames/s at 1, 4, 8, ... 64 on this machine, recorded per machine and model."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.runtimes.records import read_record, write_record

BATCH_SIZES = (1, 4, 8, 16, 32, 64)
CALIBRATION_FILE = "calibration.json"
TOLERANCE = 0.05  # the smallest batch within 5% of the best rate wins: same speed, lower latency


@dataclass(frozen=True)
class Calibration:
    batch_size: int
    frames_per_s: dict[int, float]
    cached: bool = False


def calibrate(
    encode: Callable[[np.ndarray], object],
    frame: np.ndarray,
    sizes: Sequence[int] = BATCH_SIZES,
    budget_s: float = 60.0,
) -> Calibration:
    """Time `encode` at each batch size (one warm-up and one timed run each), within about `budget_s`.

    A size whose predicted run time (at the best rate so far) would overrun the budget is skipped, as are all
    larger ones; at least the first size is measured.
    """
    started = time.perf_counter()
    rates: dict[int, float] = {}
    for size in sorted(sizes):
        batch = np.repeat(frame[None], size, axis=0)
        if rates:
            predicted = 2 * size / max(rates.values())
            if time.perf_counter() - started + predicted > budget_s:
                break
        encode(batch)  # warm-up: allocator, thread pools, kernels picked for this shape
        t0 = time.perf_counter()
        encode(batch)
        rates[size] = size / max(time.perf_counter() - t0, 1e-9)
    best = max(rates.values())
    chosen = min(size for size, rate in rates.items() if rate >= best * (1 - TOLERANCE))
    return Calibration(chosen, rates)


def calibrated_batch_size(
    root: Path,
    key: str,
    encode: Callable[[np.ndarray], object],
    frame: np.ndarray,
    sizes: Sequence[int] = BATCH_SIZES,
    budget_s: float = 60.0,
) -> Calibration:
    """The recorded calibration for `key` (machine, runtime, model) or a new one, then recorded."""
    path = root / CALIBRATION_FILE
    record = read_record(path, key)
    if record and isinstance(record.get("batch_size"), int):
        rates = {int(k): float(v) for k, v in record.get("frames_per_s", {}).items()}
        return Calibration(record["batch_size"], rates, cached=True)
    calibration = calibrate(encode, frame, sizes, budget_s)
    write_record(path, key, {"batch_size": calibration.batch_size, "frames_per_s": calibration.frames_per_s})
    return calibration
