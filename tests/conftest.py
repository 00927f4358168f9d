"""Shared fixtures: tiny random open_clip models built offline, synthetic frames, real services for e2e."""

from __future__ import annotations

import os

# Model weights cannot be downloaded here (nor in CI): hub clients fail at once instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from models.zero_shot import ZeroShotConfig, ZeroShotScorer, create_zero_shot_scorer

TINY_CLIP = "lensguard-tiny-ViT"
TINY_SIGLIP = "lensguard-tiny-sigmoid"
SOILING_XML = "labeling_config/soiling.xml"


@pytest.fixture(scope="session")
def tiny_clip() -> ZeroShotScorer:
    return create_zero_shot_scorer(ZeroShotConfig(model_name=TINY_CLIP, pretrained=None, device="cpu"))


@pytest.fixture(scope="session")
def tiny_siglip() -> ZeroShotScorer:
    return create_zero_shot_scorer(ZeroShotConfig(model_name=TINY_SIGLIP, pretrained=None, device="cpu"))


@pytest.fixture(scope="session")
def soiling_config() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parent.parent / SOILING_XML).read_text()
