"""Label Studio server settings lensguard relies on, and the check that a running server has them.

Label Studio 1.23's prediction import (`POST /api/projects/{id}/import/predictions`) re-counts the predictions
of every already predicted task of the project after each call unless its memory-efficient import flag is on,
so bulk pre-annotation and re-scoring slow down with the square of the project's size (measured: the 24th
import of 256 predictions took 2.2 s on the legacy path and 0.2 s with the flag, 6,000 tasks). The flag is a
Label Studio environment variable; `lensguard up`, the tests and docker-compose.yml set it.
"""

from __future__ import annotations

FAST_PREDICTION_IMPORT = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"
RECOMMENDED_ENV = {FAST_PREDICTION_IMPORT: "true"}


def slow_import_warning(flags: dict[str, object] | None) -> str | None:
    """A one-line warning when the server's flags say prediction imports take the slow path; None when they
    don't, or when the flags could not be read (an older or locked-down server: nothing to claim)."""
    if flags is None or flags.get(FAST_PREDICTION_IMPORT) is not False:
        return None
    return (
        "Label Studio imports predictions on its legacy path, which re-counts every predicted task of the project "
        "on each import (pre-annotation and re-scoring slow down quadratically): start it with "
        f"{FAST_PREDICTION_IMPORT}=true in its environment"
    )
