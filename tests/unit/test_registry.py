import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from models.active_models import ActiveModels
from models.classifier import LinearProbe
from models.kinds import load_version
from models.registry import ModelRegistry, RegistryError, version_name


def write_probe(registry: ModelRegistry, name: str, weights: np.ndarray, metrics: dict | None = None):
    probe = LinearProbe(weights, 0.0, encoder="enc")
    return registry.write_version(1, "probe", name, probe.save, metrics or {"roc_auc": 0.5})


def test_version_names_follow_kind_time_hash():
    name = version_name("probe", b"weights")
    kind, date, time, digest = name.split("-")
    assert kind == "probe" and len(date) == 8 and len(time) == 6 and len(digest) == 6


def test_versions_are_complete_and_promotion_is_explicit(tmp_path):
    registry = ModelRegistry(tmp_path)
    first = write_probe(registry, "probe-1", np.ones(4))
    assert registry.active(1, "probe") is None
    registry.promote(first, "first version")
    assert registry.active(1, "probe").name == "probe-1"
    second = write_probe(registry, "probe-2", np.zeros(4), {"roc_auc": 0.9})
    assert [v.name for v in registry.versions(1, "probe")] == ["probe-1", "probe-2"]
    assert registry.active(1, "probe").name == "probe-1"
    assert second.metrics == {"roc_auc": 0.9}
    assert second.config["version"] == "probe-2" and second.config["encoder"] == "enc"
    with pytest.raises(RegistryError, match="exists already"):
        write_probe(registry, "probe-2", np.zeros(4))


def test_a_failing_writer_leaves_no_version_and_no_staging(tmp_path):
    registry = ModelRegistry(tmp_path)

    def broken(directory):
        (directory / "half.bin").write_bytes(b"x" * 100)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        registry.write_version(1, "probe", "probe-x", broken, {})
    assert registry.versions(1, "probe") == []
    assert list((tmp_path / "project-1" / "probe").iterdir()) == []


def test_a_killed_writer_leaves_only_staging_that_a_worker_cleans(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from models.registry import ModelRegistry
        def write(directory):
            (directory / "model.pt").write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
        ModelRegistry({str(tmp_path)!r}).write_version(1, "finetune", "finetune-1", write, {{}})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd())
    assert result.returncode == -9
    registry = ModelRegistry(tmp_path)
    assert registry.versions(1, "finetune") == []
    assert len(list((tmp_path / "project-1" / "finetune").glob(".staging-*"))) == 1
    assert registry.clean_staging() == 1
    assert list((tmp_path / "project-1" / "finetune").iterdir()) == []


def test_active_pointer_to_a_missing_version_serves_nothing(tmp_path):
    registry = ModelRegistry(tmp_path)
    pointer = registry.active_pointer(1, "probe")
    pointer.parent.mkdir(parents=True)
    pointer.write_text(json.dumps({"version": "probe-gone"}))
    assert registry.active(1, "probe") is None
    pointer.write_text("{corrupt")
    assert registry.active(1, "probe") is None


def test_serving_picks_up_a_promotion_without_restart(tmp_path):
    registry = ModelRegistry(tmp_path)
    active = ActiveModels(registry, ["finetune", "probe"], load_version)
    assert active.get("1") is None
    first = write_probe(registry, "probe-1", np.ones(4))
    registry.promote(first, "first")
    assert active.get("1")[0].name == "probe-1"
    second = write_probe(registry, "probe-2", -np.ones(4))
    registry.promote(second, "better")
    version, probe = active.get("1")
    assert version.name == "probe-2"
    assert probe.predict_proba(np.ones((1, 4)))[0] < 0.5
    other = ActiveModels(registry, ["probe"], load_version, lambda v: v.config["encoder"] == "another-encoder")
    assert other.get("1") is None, "a version the server does not accept is never served"
