"""The model registry on S3, against a real S3 API server (moto's server mode) started by the tests."""

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest

from models.active_models import ActiveModels
from models.classifier import LinearProbe
from models.kinds import load_version
from models.object_store_registry import ObjectStoreRegistry
from models.registry import ModelRegistry, PromotionConflict, RegistryError, open_registry
from tests.s3_server import s3_server, storage_options

REPO = Path(__file__).resolve().parents[2]
BUCKET = "lensguard-models"


@pytest.fixture(scope="module")
def endpoint():
    with s3_server() as url:
        fsspec.filesystem("s3", **storage_options(url)).mkdir(BUCKET)
        yield url


@pytest.fixture
def url(endpoint):
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"


def machine(url: str, endpoint: str, cache: Path, poll_seconds: float = 0.0) -> ObjectStoreRegistry:
    """A registry as one machine sees it: its own S3 client and its own local cache folder."""
    return ObjectStoreRegistry(url, storage_options(endpoint), cache, poll_seconds=poll_seconds)


def write_probe(registry, name: str, weights, metrics: dict | None = None):
    probe = LinearProbe(np.asarray(weights, dtype=float), 0.0, encoder="enc")
    return registry.write_version(1, "probe", name, probe.save, metrics or {"roc_auc": 0.5})


def test_open_registry_picks_the_store_by_location(tmp_path, endpoint):
    assert isinstance(open_registry(tmp_path), ModelRegistry)
    assert isinstance(open_registry(f"file://{tmp_path}"), ModelRegistry)
    remote = open_registry(f"s3://{BUCKET}/x", storage_options(endpoint), tmp_path / "cache")
    assert isinstance(remote, ObjectStoreRegistry) and remote.cache_dir.parent == tmp_path / "cache"


def test_a_version_written_on_one_machine_is_served_on_another_without_shared_files(tmp_path, url, endpoint):
    trainer = machine(url, endpoint, tmp_path / "trainer")
    server = machine(url, endpoint, tmp_path / "server")
    first = write_probe(trainer, "probe-1", [1, 1, 1, 1])
    assert server.versions(1, "probe")[0].name == "probe-1"
    assert server.active(1, "probe") is None, "written is not promoted"
    trainer.promote(first, "first version", expected=None)

    served = server.active(1, "probe")
    assert served.name == "probe-1" and served.path.is_relative_to(tmp_path / "server")
    assert served.config["encoder"] == "enc" and served.metrics == {"roc_auc": 0.5}
    probe = load_version(served)
    assert probe.predict_proba(np.ones((1, 4)))[0] > 0.5
    assert (
        json.loads(fsspec.open(f"{url}/project-1/probe/active.json", **storage_options(endpoint)).open().read())[
            "version"
        ]
        == "probe-1"
    )
    with pytest.raises(RegistryError, match="exists already"):
        write_probe(server, "probe-1", [0, 0, 0, 0])


def test_concurrent_promoters_one_wins_each_round(tmp_path, url, endpoint):
    workers = [machine(url, endpoint, tmp_path / f"worker-{i}") for i in range(6)]
    versions = [write_probe(w, f"probe-{i}", [i, 0, 0, 0]) for i, w in enumerate(workers)]

    def race(expected, racing):
        start = threading.Barrier(len(racing))
        outcomes: dict[int, str] = {}

        def promote(i):
            start.wait()
            try:
                workers[i].promote(versions[i], f"worker {i}", expected=expected)
                outcomes[i] = "promoted"
            except PromotionConflict:
                outcomes[i] = "conflict"

        threads = [threading.Thread(target=promote, args=(i,)) for i in racing]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [i for i, outcome in outcomes.items() if outcome == "promoted"]
        assert len(winners) == 1 and len(outcomes) == len(racing), outcomes
        return winners[0]

    first = race(None, range(len(workers)))
    assert workers[0].active(1, "probe").name == f"probe-{first}"
    second = race(f"probe-{first}", [i for i in range(len(workers)) if i != first])
    assert workers[0].active(1, "probe").name == f"probe-{second}"


def test_a_writer_killed_mid_upload_leaves_no_version(tmp_path, url, endpoint):
    cache = tmp_path / "worker"
    script = textwrap.dedent(
        f"""
        import time
        from models.object_store_registry import ObjectStoreRegistry
        from tests.s3_server import storage_options
        registry = ObjectStoreRegistry({url!r}, storage_options({endpoint!r}), {str(cache)!r})
        upload = registry.fs.put_file
        def slow_link(local, remote, **kwargs):  # the upload stalls after the first file
            upload(local, remote, **kwargs)
            time.sleep(60)
        registry.fs.put_file = slow_link
        def write(directory):
            (directory / "model.pt").write_bytes(b"w" * 2_000_000)
            (directory / "extra.bin").write_bytes(b"x" * 1000)
            return {{"arch": "test"}}
        registry.write_version(1, "finetune", "finetune-1", write, {{}})
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    fs = fsspec.filesystem("s3", **storage_options(endpoint))
    version_prefix = f"{url.removeprefix('s3://')}/project-1/finetune/finetune-1"
    deadline = time.monotonic() + 60
    while not fs.find(version_prefix) and time.monotonic() < deadline and writer.poll() is None:
        fs.invalidate_cache()
        time.sleep(0.1)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=10) == -signal.SIGKILL
    uploaded = [Path(p).name for p in fs.find(version_prefix)]
    assert uploaded and "config.json" not in uploaded, "killed after some files, before the marker"

    registry = machine(url, endpoint, cache)
    assert registry.versions(1, "finetune") == []
    assert registry.clean_staging() == 1, "the dead writer's local staging; the upload may still be live elsewhere"
    assert len(fs.find(version_prefix)) == len(uploaded)
    assert registry.clean_staging(max_age_seconds=0) == 1, "stale incomplete uploads go"
    fs.invalidate_cache()
    assert fs.find(version_prefix) == []
    retried = registry.write_version(1, "finetune", "finetune-1", lambda d: {"arch": "test"}, {})
    assert [v.name for v in registry.versions(1, "finetune")] == [retried.name]


def test_serving_notices_a_promotion_without_restart(tmp_path, url, endpoint):
    trainer = machine(url, endpoint, tmp_path / "trainer")
    serving = ActiveModels(machine(url, endpoint, tmp_path / "server"), ["finetune", "probe"], load_version)
    assert serving.get("1") is None
    trainer.promote(write_probe(trainer, "probe-1", [1, 1, 1, 1]), "first", expected=None)
    assert serving.get("1")[0].name == "probe-1"
    trainer.promote(write_probe(trainer, "probe-2", [-1, -1, -1, -1]), "better", expected="probe-1")
    version, probe = serving.get("1")
    assert version.name == "probe-2" and probe.predict_proba(np.ones((1, 4)))[0] < 0.5

    rate_limited = ActiveModels(machine(url, endpoint, tmp_path / "server2", poll_seconds=3600), ["probe"], str)
    assert rate_limited.get("1")[0].name == "probe-2"
    trainer.promote(write_probe(trainer, "probe-3", [2, 2, 2, 2]), "best", expected="probe-2")
    assert rate_limited.get("1")[0].name == "probe-2", "the pointer is not polled again within poll_seconds"
    assert serving.get("1")[0].name == "probe-3"


def test_promotion_is_checked_on_stores_without_conditional_writes(tmp_path):
    """fsspec backends other than S3 get the documented check-then-write with re-read (here: memory://)."""
    registry = ObjectStoreRegistry(f"memory://registry-{uuid.uuid4().hex[:8]}", {}, tmp_path, poll_seconds=0)
    serving = ActiveModels(registry, ["probe"], load_version)
    first = write_probe(registry, "probe-1", [1, 1, 1, 1])
    second = write_probe(registry, "probe-2", [0, 0, 0, 0])
    registry.promote(first, "first", expected=None)
    assert serving.get("1")[0].name == "probe-1"
    with pytest.raises(PromotionConflict, match="active is probe-1"):
        registry.promote(second, "stale view", expected=None)
    registry.promote(second, "better", expected="probe-1")
    assert registry.active(1, "probe").name == "probe-2"
    assert serving.get("1")[0].name == "probe-2", "the pointer's metadata changed with the rewrite"
