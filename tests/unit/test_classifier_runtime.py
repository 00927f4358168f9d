"""The fine-tuned classifier runs on the optimised runtimes like the CLIP tower: same probabilities within the
fidelity floors, exported once per version, refused (PyTorch serves) below the floors."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import CalibratedClassifier, Calibration
from models.classifier.on_runtime import RuntimeClassifier, on_runtime
from models.classifier.timm_classifier import TimmClassifier
from models.registry import ModelVersion
from models.runtimes import FidelityError, FidelityFloors
from models.runtimes.fidelity import fidelity_frames
from serving.components import model_on_runtime
from settings import Settings

SIZE = 64


@pytest.fixture(scope="module")
def classifier() -> TimmClassifier:
    return TimmClassifier.create("test_efficientnet", pretrained=False, image_size=SIZE, device="cpu")


def frames(count: int = 12) -> list[np.ndarray]:
    return list(fidelity_frames(count, (SIZE, SIZE), seed=99))


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_the_exported_classifier_gives_the_same_probabilities(classifier, tmp_path, runtime):
    fast = on_runtime(classifier, runtime, tmp_path, "project1-finetune", FidelityFloors())
    assert fast.runtime == runtime and fast.fidelity.verdict_agreement == 1.0
    expected = classifier.predict_proba(frames())
    np.testing.assert_allclose(fast.predict_proba(frames(), batch_size=5), expected, atol=1e-4)
    assert fast.predict_proba([]).shape == (0,)


def test_a_version_is_exported_once_and_a_newer_one_replaces_its_file(classifier, tmp_path):
    on_runtime(classifier, "onnx", tmp_path, "project1-finetune", FidelityFloors())
    exported = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    on_runtime(classifier, "onnx", tmp_path, "project1-finetune", FidelityFloors())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == exported
    retrained = TimmClassifier.create("test_efficientnet", pretrained=False, image_size=SIZE, device="cpu")
    on_runtime(retrained, "onnx", tmp_path, "project1-finetune", FidelityFloors())
    now = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(now) == len(exported) == 1 and now != exported


def test_below_the_floors_the_runtime_is_refused(classifier, tmp_path):
    with pytest.raises(FidelityError, match="onnx-int8"):
        on_runtime(classifier, "onnx-int8", tmp_path, "project1-finetune", FidelityFloors(mean_cosine=1.01))


def test_serving_keeps_calibration_and_falls_back_to_pytorch_below_the_floors(classifier, tmp_path):
    version = ModelVersion("7", "finetune", "finetune-abc", tmp_path)
    calibrated = CalibratedClassifier(classifier, Calibration(slope=2.0, intercept=-0.5))
    settings = Settings(data_dir=tmp_path)
    served = model_on_runtime(calibrated, version, "openvino", settings)
    assert isinstance(served, CalibratedClassifier) and isinstance(served.classifier, RuntimeClassifier)
    np.testing.assert_allclose(served.predict_proba(frames()), calibrated.predict_proba(frames()), atol=1e-4)
    assert model_on_runtime(calibrated, version, "torch", settings) is calibrated
    strict = Settings(data_dir=tmp_path, runtime_min_cosine=1.01)
    assert model_on_runtime(calibrated, version, "openvino", strict) is calibrated
