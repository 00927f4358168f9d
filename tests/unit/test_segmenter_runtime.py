"""The segmenter runs on the optimised runtimes like the CLIP tower: the same masks and coverage within the
fidelity floors (tiles and overlap-blended windows included), refused (PyTorch serves) below them or where the
network does not export."""

from __future__ import annotations

import numpy as np
import pytest

from models.registry import ModelVersion
from models.runtimes import FidelityError, FidelityFloors
from models.runtimes.fidelity import fidelity_frames
from models.segmenter import Segmenter, SegmenterSpec, create_segmenter
from models.segmenter.on_runtime import RuntimeSegmenter, on_runtime
from serving.components import model_on_runtime
from settings import Settings

SIZE = (128, 64)


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    spec = SegmenterSpec("Unet", "tu-test_resnet", None, SIZE, tiles=(2, 1), overlap=0.25, device="cpu")
    return create_segmenter(spec)


def frames(count: int = 5) -> list[np.ndarray]:
    return list(fidelity_frames(count, SIZE, seed=5))


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_masks_and_coverage_match_pytorch(segmenter, tmp_path, runtime):
    fast = on_runtime(segmenter, runtime, tmp_path, "project1-segmenter", FidelityFloors())
    assert fast.runtime == runtime and fast.fidelity.verdict_agreement > 0.999
    expected = segmenter.predict_probabilities(frames())
    np.testing.assert_allclose(fast.predict_probabilities(frames()), expected, atol=1e-4)
    masks, coverage = fast.predict_with_coverage(frames(), (4, 2))
    expected_masks, expected_coverage = segmenter.predict_with_coverage(frames(), (4, 2))
    assert (masks == expected_masks).mean() > 0.999
    np.testing.assert_allclose(coverage, expected_coverage, atol=0.01)
    flipped = fast.with_options(flips=("h",))
    assert isinstance(flipped, RuntimeSegmenter) and flipped.runtime == runtime
    np.testing.assert_allclose(
        flipped.predict_probabilities(frames(2)),
        segmenter.with_options(flips=("h",)).predict_probabilities(frames(2)),
        atol=1e-4,
    )


def test_below_the_floors_the_runtime_is_refused(segmenter, tmp_path):
    with pytest.raises(FidelityError, match="onnx"):
        on_runtime(segmenter, "onnx", tmp_path, "project1-segmenter", FidelityFloors(mean_cosine=1.01))


def test_serving_falls_back_to_pytorch_where_it_cannot_use_the_runtime(segmenter, tmp_path):
    version = ModelVersion("3", "segmenter", "segmenter-abc", tmp_path)
    settings = Settings(data_dir=tmp_path)
    assert isinstance(model_on_runtime(segmenter, version, "onnx", settings), RuntimeSegmenter)
    assert model_on_runtime(segmenter, version, "torch", settings) is segmenter
    strict = Settings(data_dir=tmp_path, runtime_min_agreement=1.01)
    assert model_on_runtime(segmenter, version, "onnx", strict) is segmenter
