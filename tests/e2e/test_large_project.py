"""The large-project benchmark at CI size: 2,000 tasks on Label Studio with PostgreSQL, every phase run twice,
with task pages of 100 and of 1,000. Each phase completes, and the workers' peak memory stays flat between the
two page sizes (a job holds a page and its chunk, not the project). Figures are printed, not asserted on time."""

from __future__ import annotations

import json
import subprocess
import sys

from lensguard.launcher import REPO_ROOT
from tests.services import redis_url

PHASES = ["planning", "pre-annotating 5%", "selection", "probe training", "re-scoring"]


def test_large_project_benchmark_at_2000_tasks_keeps_memory_flat_across_page_sizes(tmp_path):
    out = tmp_path / "phases.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.large_project",
        "--tasks",
        "2000",
        "--page-sizes",
        "100,1000",
        "--base-frames",
        "16",
        "--redis",
        redis_url(5),
        "--json",
        str(out),
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stderr[-4000:]
    rounds = json.loads(out.read_text())["rounds"]
    small, large = ({p["name"]: p for p in rounds[size]} for size in ("100", "1000"))
    assert list(small) == PHASES and list(large) == PHASES
    assert "100 tasks to pre-annotate" in small["planning"]["note"], "5% of 2,000 lack a prediction"
    assert small["selection"]["note"].startswith("500 selected")
    for name in PHASES:
        for peaks in (small[name]["peaks"], large[name]["peaks"]):
            assert peaks["worker"] > 0 and peaks["backend"] > 0, name
        a, b = small[name]["peaks"]["worker"], large[name]["peaks"]["worker"]
        assert abs(a - b) <= 0.15 * min(a, b) + 64, f"{name}: worker peak RSS {a:.0f} vs {b:.0f} MiB"
    a, b = small["selection"]["peaks"]["select"], large["selection"]["peaks"]["select"]
    assert abs(a - b) <= 0.15 * min(a, b) + 64, f"selection process peak RSS {a:.0f} vs {b:.0f} MiB"
