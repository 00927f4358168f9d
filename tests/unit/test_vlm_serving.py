"""/predict with the VLM cascade: band frames get the VLM's TextArea text and the combined model_version when it
answers in time; the CLIP prediction comes back regardless. RANDOM WEIGHTS: a tiny random Qwen2-VL (its answers
are noise, so the text says the answer could not be read) and a tiny random CLIP."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from serving.components import build_serving
from tests.tiny_vlm import SMALL_FRAME_PIXELS, save_tiny_vlm
from tests.unit.test_app import AUTH, TOKEN, settings_for, tasks
from training.synthetic import make_frames

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Choices name="soiling" toName="image"><Choice value="clean"/><Choice value="dirty"/></Choices>
  <Choices name="soiling_type" toName="image"><Choice value="mud"/><Choice value="water drops"/></Choices>
  <TextArea name="explanation" toName="image"/>
</View>"""


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> str:
    return save_tiny_vlm("qwen2-vl", tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture
def served(file_server, tmp_path):
    file_server.required_auth = f"Token {TOKEN}"
    for i, frame in enumerate(make_frames(4, 320, 180, seed=1)):
        file_server.files[f"/data/upload/1/frame{i}.jpg"] = frame.jpeg()

    def start(**overrides) -> TestClient:
        settings = settings_for(file_server.url, tmp_path, **overrides)
        return TestClient(create_app(settings, build_serving(settings)), headers=AUTH)

    return start


def vlm_settings(model: str, **overrides) -> dict:
    defaults = dict(
        vlm_model=model,
        vlm_force_on_cpu=True,
        vlm_max_new_tokens=6,
        vlm_max_image_pixels=SMALL_FRAME_PIXELS,
        vlm_band_low=0.0,
        vlm_band_high=1.0,
        vlm_predict_budget_seconds=120.0,
    )
    return defaults | overrides


def test_band_frames_get_the_vlm_text_and_the_combined_version(served, tiny_qwen):
    with served(**vlm_settings(tiny_qwen, vlm_max_per_batch=2)) as client:
        body = client.post("/predict", json={"tasks": tasks(3), "label_config": CONFIG}).json()
        metrics = client.get("/metrics", params={"format": "json"}).json()
    results = body["results"]
    with_vlm = [r for r in results if "+cascade1-override-u0.00-1.00+vlm-" in r["model_version"]]
    assert len(with_vlm) == 2, "the per-batch cap sends the two most uncertain frames"
    for result in with_vlm:
        text = next(r for r in result["result"] if r["type"] == "textarea")["value"]["text"][0]
        assert text.startswith("VLM: answer could not be read") and "zero-shot CLIP" in text
    clip_only = [r for r in results if r not in with_vlm]
    assert len(clip_only) == 1 and "+vlm-" not in clip_only[0]["model_version"]
    assert metrics["vlm_answered"] == 2 and metrics["vlm_unparsed"] == 2


def test_the_clip_answer_comes_back_when_the_vlm_is_late(served, tiny_qwen):
    with served(**vlm_settings(tiny_qwen, vlm_predict_budget_seconds=0.001)) as client:
        body = client.post("/predict", json={"tasks": tasks(2), "label_config": CONFIG}).json()
        metrics = client.get("/metrics", params={"format": "json"}).json()
    assert len(body["results"]) == 2
    assert all("+vlm-" not in r["model_version"] and r["result"] for r in body["results"])
    assert metrics["vlm_late"] == 2


def test_frames_outside_the_band_never_reach_the_vlm(served, tiny_qwen):
    with served(**vlm_settings(tiny_qwen, vlm_band_low=1.0)) as client:  # only a coin-flip 0.5 would qualify
        body = client.post("/predict", json={"tasks": tasks(3), "label_config": CONFIG}).json()
        metrics = client.get("/metrics", params={"format": "json"}).json()
    assert all("+vlm-" not in r["model_version"] for r in body["results"])
    assert "vlm_answered" not in metrics


def test_on_cpu_the_vlm_is_off_unless_forced_and_health_says_so(served, tiny_qwen):
    with served(vlm_model=tiny_qwen) as client:
        health = client.get("/health").json()
        body = client.post("/predict", json={"tasks": tasks(1), "label_config": CONFIG}).json()
    assert health["status"] == "UP"
    assert any("VLM off" in w and "LENSGUARD_VLM_FORCE_ON_CPU" in w for w in health["warnings"])
    assert "+vlm-" not in body["results"][0]["model_version"]


def test_missing_vlm_weights_turn_the_vlm_off_with_a_warning_not_the_backend(served, tmp_path):
    with served(vlm_model=str(tmp_path / "no-vlm-here"), vlm_force_on_cpu=True) as client:
        health = client.get("/health").json()
    assert health["status"] == "UP"
    assert any("VLM off" in w and "LENSGUARD_VLM_MODEL" in w for w in health["warnings"])


def test_a_failing_vlm_never_fails_predict(served, tiny_qwen, monkeypatch):
    with served(**vlm_settings(tiny_qwen)) as client:
        explainer = client.app.state.serving.service.vlm.explainer

        def out_of_memory(*args, **kwargs):  # what a GPU running out of memory looks like to the caller
            raise RuntimeError("CUDA out of memory")

        monkeypatch.setattr(explainer, "explain", out_of_memory)
        response = client.post("/predict", json={"tasks": tasks(2), "label_config": CONFIG})
        metrics = client.get("/metrics", params={"format": "json"}).json()
    assert response.status_code == 200
    assert all(r["result"] and "+vlm-" not in r["model_version"] for r in response.json()["results"])
    assert metrics["vlm_failed"] == 2
