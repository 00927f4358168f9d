"""The VLM explainers through their real code paths, on CPU, offline.

RANDOM WEIGHTS: every model here is a tiny randomly initialised Qwen2-VL, Qwen2.5-VL or BLIP-2 built from the
transformers config classes, with a byte-level tokenizer from a vocabulary made on the spot (models.vlm.random_init).
Their answers are noise, so end-to-end runs end "unparsed"; what they check is that loading (local directory,
HF cache), batching, generation, decoding, the retry and the "never crash" rule work. Parsing of meaningful
answers is tested on crafted texts in test_vlm_parsing.py.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from models.vlm import (
    VlmConfig,
    VlmVerdict,
    create_vlm_explainer,
    load_vlm,
    serving_vlm,
    vlm_availability,
)
from models.vlm.blip2 import Blip2Explainer
from models.vlm.config import resolve_family
from models.vlm.qwen_vl import QwenVlExplainer
from models.zero_shot.loading import WeightsUnavailableError
from tests.tiny_vlm import SMALL_FRAME_PIXELS as SMALL
from tests.tiny_vlm import save_tiny_vlm as save_tiny

TYPES = ("mud", "water drops", "dust")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module", params=["qwen2-vl", "qwen2.5-vl", "blip2"])
def tiny_dir(request, tmp_path_factory):
    return request.param, save_tiny(request.param, tmp_path_factory.mktemp(request.param))


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (72, 128, 3), dtype=np.uint8) for _ in range(count)]


def tiny_config(path: str, **overrides) -> VlmConfig:
    return VlmConfig(model=path, max_new_tokens=12, batch_size=2, max_image_pixels=SMALL, **overrides)


def test_a_saved_model_loads_from_its_directory_and_answers_every_frame_in_order(tiny_dir):
    family, path = tiny_dir
    explainer = create_vlm_explainer(tiny_config(path))
    assert explainer.loaded.family == family
    assert explainer.loaded.weights.startswith("dir:") and not explainer.loaded.random_weights
    assert explainer.loaded.dtype == torch.float32  # CPU; a GPU gets float16
    answers = explainer.explain(frames(3), TYPES)  # two batches: 2 + 1
    assert len(answers) == 3
    for answer in answers:  # random weights write noise: unparsed, with the raw text kept, no exception
        assert answer.verdict == VlmVerdict.UNPARSED
        assert answer.raw
        assert answer.attempts == (2 if family != "blip2" else 1)
    assert explainer.version.startswith(f"vlm-{os.path.basename(path)}-")


def test_a_hub_name_loads_from_the_hugging_face_cache(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--lensguard-test--tiny-qwen2-vl" / "snapshots" / "0123abcd"
    save_tiny("qwen2-vl", snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    loaded = load_vlm(VlmConfig(model="lensguard-test/tiny-qwen2-vl", family="qwen2-vl"))
    assert loaded.weights == "hub:lensguard-test/tiny-qwen2-vl"
    assert not loaded.random_weights


def test_absent_weights_are_one_line_naming_the_setting_unless_random_is_allowed(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    config = VlmConfig(model="lensguard-test/absent-qwen2-vl", max_image_pixels=SMALL)
    with pytest.raises(WeightsUnavailableError) as refused:
        load_vlm(config)
    message = str(refused.value)
    assert "\n" not in message and "LENSGUARD_VLM_MODEL" in message and "ALLOW_RANDOM" in message
    with pytest.raises(WeightsUnavailableError, match="LENSGUARD_VLM_MODEL"):
        load_vlm(VlmConfig(model=str(tmp_path / "no-such-dir"), allow_random_weights=True))
    allowed = VlmConfig(
        model="lensguard-test/absent-qwen2-vl", allow_random_weights=True, random_architecture="tiny", batch_size=1
    )
    explainer = create_vlm_explainer(allowed)  # RANDOM weights, by permission
    assert explainer.loaded.random_weights and explainer.version == "vlm-absent-qwen2-vl-RANDOM"
    assert "RANDOM" in explainer.warnings[0]


def test_the_family_comes_from_the_directory_or_the_name(tiny_dir):
    family, path = tiny_dir
    assert resolve_family(VlmConfig(model=path)) == family
    assert resolve_family(VlmConfig(model="Qwen/Qwen2.5-VL-3B-Instruct")) == "qwen2.5-vl"
    assert resolve_family(VlmConfig(model="Qwen/Qwen2-VL-2B-Instruct")) == "qwen2-vl"
    assert resolve_family(VlmConfig(model="Salesforce/blip2-opt-2.7b")) == "blip2"
    with pytest.raises(ValueError, match="family"):
        resolve_family(VlmConfig(model="someone/llava-7b"))


def test_the_vlm_is_off_on_cpu_unless_forced(tiny_dir):
    _, path = tiny_dir
    enabled, reason = vlm_availability(VlmConfig(model=path, device="cpu"))
    assert not enabled and "FORCE_ON_CPU" in reason
    assert serving_vlm(VlmConfig(model=path, device="cpu")) == (None, reason)
    explainer, status = serving_vlm(tiny_config(path, device="cpu", force_on_cpu=True))
    assert explainer is not None and "forced on CPU" in status


def qwen_explainer(tmp_path) -> QwenVlExplainer:
    return create_vlm_explainer(tiny_config(save_tiny("qwen2-vl", tmp_path)))


def test_a_chat_answer_that_fails_is_retried_once_with_the_stricter_prompt(tmp_path, monkeypatch):
    explainer = qwen_explainer(tmp_path)
    good = '{"verdict": "dirty", "confidence": 0.9, "soiling_types": ["Mud"], "regions": [], "explanation": "mud."}'
    prompts = []

    def ask(images, prompt):  # crafted replies in place of the random model's noise; the retry logic is real
        prompts.append(prompt)
        return ['{"verdict": "dirt', good][: len(images)] if len(prompts) == 1 else [good] * len(images)

    monkeypatch.setattr(explainer, "_ask", ask)
    first, second = explainer.explain(frames(2), TYPES)
    assert second.verdict == VlmVerdict.DIRTY and second.attempts == 1
    assert first.verdict == VlmVerdict.DIRTY and first.attempts == 2 and first.soiling_types == ("mud",)
    assert "could not be read" in prompts[1] and "could not be read" not in prompts[0]


def test_blip2_scores_the_answer_from_the_yes_and_no_token_probabilities(tmp_path):
    explainer = create_vlm_explainer(tiny_config(save_tiny("blip2", tmp_path)))
    assert isinstance(explainer, Blip2Explainer)
    logits = torch.zeros(2, explainer.loaded.model.config.text_config.vocab_size)
    logits[0, explainer._yes_ids] = 10.0
    logits[1, explainer._no_ids] = 10.0
    p_yes = explainer._p_yes(logits)
    assert p_yes[0] > 0.99 and p_yes[1] < 0.01
