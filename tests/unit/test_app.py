import base64
import logging

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from serving.components import build_serving
from settings import Settings
from training.synthetic import make_frames

TOKEN = "legacy-token-1234567890"
CONFIG_RENAMED = """<View>
  <Image name="frame" value="$photo"/>
  <Choices name="lens_state" toName="frame"><Choice value="Clean lens"/><Choice value="Dirty lens"/></Choices>
</View>"""


def settings_for(server_url: str, tmp_path, **overrides) -> Settings:
    values = dict(
        label_studio_url=server_url,
        label_studio_api_key=TOKEN,
        clip_model="lensguard-tiny-ViT",
        clip_pretrained=None,
        allow_random_weights=True,
        device="cpu",
        data_dir=tmp_path,
        max_image_bytes=2_000_000,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def frames():
    return [frame.jpeg() for frame in make_frames(4, 320, 180, seed=1)]


@pytest.fixture
def client(file_server, tmp_path, frames):
    file_server.required_auth = f"Token {TOKEN}"
    for i, data in enumerate(frames):
        file_server.files[f"/data/upload/1/frame{i}.jpg"] = data
    settings = settings_for(file_server.url, tmp_path)
    app = create_app(settings, build_serving(settings))
    with TestClient(app) as test_client:
        yield test_client


def tasks(n: int, key: str = "image") -> list[dict]:
    return [{"id": i + 1, "data": {key: f"/data/upload/1/frame{i}.jpg"}} for i in range(n)]


def test_health_reports_model_and_random_weights(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "UP"
    assert body["weights"] == "random"
    assert "RANDOM" in body["model_version"]
    assert any("RANDOM" in w for w in body["warnings"])


def test_health_is_down_when_weights_are_missing(tmp_path):
    settings = settings_for("http://127.0.0.1:9", tmp_path, clip_pretrained=str(tmp_path / "missing.pt"))
    settings.allow_random_weights = False
    with TestClient(create_app(settings, build_serving(settings))) as test_client:
        health = test_client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "DOWN"
        assert "missing.pt" in health.json()["error"]
        predict = test_client.post("/predict", json={"tasks": [], "label_config": "<View/>"})
        assert predict.status_code == 503


def test_setup_returns_model_version_and_checks_config(client, soiling_config):
    version = client.get("/health").json()["model_version"]
    response = client.post("/setup", json={"project": "3.1717171717", "schema": soiling_config})
    assert response.status_code == 200
    assert response.json() == {"model_version": version}
    bad = client.post("/setup", json={"project": "3.1", "schema": "<View><Text name='t' value='$t'/></View>"})
    assert bad.status_code == 422
    assert "no <Image>" in bad.json()["detail"]


def test_predict_returns_one_prediction_per_task_for_the_config(client, soiling_config):
    response = client.post("/predict", json={"tasks": tasks(4), "label_config": soiling_config, "project": "1.5"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 4
    for task_id, prediction in enumerate(body["results"], start=1):
        assert prediction["task"] == task_id
        assert prediction["model_version"] == body["model_version"]
        assert 0.0 <= prediction["score"] <= 1.0
        by_name = {region["from_name"]: region for region in prediction["result"]}
        choice = by_name["soiling"]["value"]["choices"]
        assert choice in (["clean"], ["dirty"])
        assert by_name["explanation"]["value"]["text"][0].startswith("zero-shot CLIP: lens ")
        if choice == ["dirty"]:
            assert set(by_name["soiling_type"]["value"]["choices"]) <= {
                "mud",
                "water drops",
                "dust",
                "snow or ice",
                "condensation or fog",
                "smear",
                "other",
            }


def test_setup_config_is_used_when_predict_has_none(client, soiling_config):
    client.post("/setup", json={"project": "7.123", "schema": soiling_config})
    response = client.post("/predict", json={"tasks": tasks(1), "project": "7.123"})
    assert response.status_code == 200
    assert response.json()["results"][0]["result"][0]["from_name"] == "soiling"
    missing = client.post("/predict", json={"tasks": tasks(1), "project": "8.1"})
    assert missing.status_code == 422
    assert "label_config" in missing.json()["detail"]


def test_renamed_tags_and_missing_optional_tags(client):
    response = client.post("/predict", json={"tasks": tasks(2, key="photo"), "label_config": CONFIG_RENAMED})
    assert response.status_code == 200
    for prediction in response.json()["results"]:
        [region] = prediction["result"]
        assert region["from_name"] == "lens_state" and region["to_name"] == "frame"
        assert region["value"]["choices"][0] in ("Clean lens", "Dirty lens")


def test_unusable_config_is_a_clear_422(client):
    config = "<View><Image name='i' value='$image'/><Choices name='c' toName='i'><Choice value='cat'/></Choices></View>"
    response = client.post("/predict", json={"tasks": tasks(1), "label_config": config})
    assert response.status_code == 422
    assert "clean and one dirty" in response.json()["detail"]


def test_bad_images_get_error_entries_and_the_rest_are_predicted(client, file_server, soiling_config, frames):
    file_server.files["/data/upload/1/corrupt.jpg"] = b"\xff\xd8 this is not a jpeg"
    file_server.files["/data/upload/1/huge.jpg"] = b"\xff" * 2_500_000
    batch = [
        {"id": 1, "data": {"image": "/data/upload/1/frame0.jpg"}},
        {"id": 2, "data": {"image": "/data/upload/1/missing.jpg"}},
        {"id": 3, "data": {"image": "/data/upload/1/corrupt.jpg"}},
        {"id": 4, "data": {"image": "/data/upload/1/huge.jpg"}},
        {"id": 5, "data": {"image": "https://elsewhere.example.com/x.jpg"}},
        {"id": 6, "data": {"text": "no image here"}},
        {"id": 7, "data": {"image": "s3://bucket/key.jpg"}},
        {"id": 8, "data": {"image": "/data/upload/1/frame1.jpg"}},
    ]
    response = client.post("/predict", json={"tasks": batch, "label_config": soiling_config})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 8
    assert "result" in results[0] and "result" in results[7]
    errors = {r["task"]: r["error"] for r in results if "error" in r}
    assert set(errors) == {2, 3, 4, 5, 6, 7}
    assert all("result" not in r for r in results if "error" in r)  # Label Studio skips items without result
    assert "HTTP 404" in errors[2]
    assert "not a readable image" in errors[3]
    assert "limit" in errors[4]
    assert "LENSGUARD_ALLOWED_IMAGE_HOSTS" in errors[5]
    assert "no 'image' field" in errors[6]
    assert "unsupported image URL scheme 's3'" in errors[7]
    metrics = client.get("/metrics").json()
    assert metrics["tasks_failed"] == 6 and metrics["tasks_predicted"] == 2


def test_repeated_predict_and_new_prompt_sets_reuse_cached_embeddings(client, soiling_config, tmp_path):
    serving = client.app.state.serving
    client.post("/predict", json={"tasks": tasks(3), "label_config": soiling_config})
    encoded = serving.service.pipeline.stats.encoded
    assert encoded == 3
    again = client.post("/predict", json={"tasks": tasks(3), "label_config": soiling_config}).json()
    assert serving.service.pipeline.stats.encoded == 3
    assert serving.service.pipeline.stats.cache_hits == 3
    prompts = tmp_path / "other.json"
    prompts.write_text('{"name": "other", "version": "2", "classes": {"clean": ["fine"], "dirty": ["filthy"]}}')
    settings = serving.settings.model_copy(update={"prompt_set": str(prompts)})
    other = build_serving(settings)
    with TestClient(create_app(settings, other)) as second:
        body = second.post("/predict", json={"tasks": tasks(3), "label_config": soiling_config}).json()
    assert other.service.pipeline.stats.encoded == 0 and other.service.pipeline.stats.cache_hits == 3
    assert body["model_version"] != again["model_version"] and "other-v2" in body["model_version"]


def test_malformed_requests_get_422_not_500(client):
    assert (
        client.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
    )
    response = client.post("/predict", json={"tasks": "nope"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("malformed request: body.tasks")
    assert client.post("/predict", json={"tasks": [{"id": 1}]}).status_code == 422
    assert client.post("/webhook", json={"no_action": True}).status_code == 422
    assert client.post("/setup", json=[1, 2]).status_code == 422


def test_unknown_webhook_actions_are_accepted_and_ignored(client):
    response = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "action": "PROJECT_UPDATED"}


def test_basic_auth_protects_everything_but_health(file_server, tmp_path, soiling_config):
    settings = settings_for(file_server.url, tmp_path, basic_auth_user="ls", basic_auth_pass="s3cret")
    with TestClient(create_app(settings, build_serving(settings))) as test_client:
        assert test_client.get("/health").status_code == 200
        for method, path in [("post", "/setup"), ("post", "/predict"), ("post", "/webhook"), ("get", "/metrics")]:
            assert getattr(test_client, method)(path).status_code == 401
        wrong = {"Authorization": "Basic " + base64.b64encode(b"ls:nope").decode()}
        assert test_client.post("/setup", json={}, headers=wrong).status_code == 401
        right = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
        assert test_client.post("/setup", json={"schema": soiling_config}, headers=right).status_code == 200


def test_token_goes_only_to_label_studio_and_never_into_logs(file_server, tmp_path, soiling_config, caplog, frames):
    file_server.files["/img.jpg"] = frames[0]
    settings = settings_for(
        "http://127.0.0.1:9", tmp_path, allowed_image_hosts=["127.0.0.1"], label_studio_api_key="wrong-token-xyz"
    )
    with caplog.at_level(logging.DEBUG), TestClient(create_app(settings, build_serving(settings))) as test_client:
        response = test_client.post(
            "/predict",
            json={
                "tasks": [{"id": 1, "data": {"image": f"{file_server.url}/img.jpg"}}],
                "label_config": soiling_config,
            },
        )
    assert "result" in response.json()["results"][0]  # an allowed non-Label-Studio host
    assert file_server.seen_auth == [None]  # ... never receives the Label Studio token
    assert "wrong-token-xyz" not in caplog.text


def test_rejected_token_is_reported_without_the_token(client, file_server, soiling_config, caplog):
    file_server.required_auth = "Token something-else"
    with caplog.at_level(logging.DEBUG):
        result = client.post("/predict", json={"tasks": tasks(1), "label_config": soiling_config}).json()["results"][0]
    assert "LENSGUARD_LABEL_STUDIO_API_KEY" in result["error"]
    assert TOKEN not in caplog.text and TOKEN not in result["error"]
