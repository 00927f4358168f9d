"""Settings are declared once; each model family's config is built from them, with nothing copied by hand."""

from __future__ import annotations

import dataclasses

import pytest

from models.object_store_registry import ObjectStoreRegistry
from models.registry import ModelRegistry
from models.vlm import VlmConfig
from models.zero_shot import ZeroShotConfig
from serving.components import zero_shot_config
from settings import Settings, open_model_registry, vlm_config
from training.finetune import FinetuneConfig, finetune_config
from training.segment import SegmenterConfig, segmenter_config

NOT_SETTINGS = {"seed"}  # fixed in code, on purpose
DERIVED = {"runtime_dir"}  # a setting whose default is derived from the data dir


@pytest.mark.parametrize(
    ("config_class", "build"),
    [
        (ZeroShotConfig, zero_shot_config),
        (FinetuneConfig, finetune_config),
        (SegmenterConfig, segmenter_config),
        (VlmConfig, vlm_config),
    ],
)
def test_every_family_config_comes_from_the_settings_with_the_same_defaults(config_class, build):
    built = build(Settings(_env_file=None))
    for field in dataclasses.fields(config_class):
        if field.name in NOT_SETTINGS | DERIVED:
            continue
        assert getattr(built, field.name) == field.default, f"{config_class.__name__}.{field.name}"


def test_runtime_settings_reach_the_zero_shot_config(monkeypatch, tmp_path):
    monkeypatch.setenv("LENSGUARD_RUNTIME", "ONNX-int8")
    monkeypatch.setenv("LENSGUARD_RUNTIME_MIN_COSINE", "0.99")
    monkeypatch.setenv("LENSGUARD_DATA_DIR", str(tmp_path))
    config = zero_shot_config(Settings(_env_file=None))
    assert config.runtime == "onnx-int8" and config.floors.mean_cosine == 0.99
    assert config.runtime_dir == tmp_path / "runtimes"
    monkeypatch.setenv("LENSGUARD_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        Settings(_env_file=None)


def test_family_configs_follow_the_environment(monkeypatch):
    monkeypatch.setenv("LENSGUARD_CLIP_MODEL", "ViT-B-32")
    monkeypatch.setenv("LENSGUARD_FINETUNE_LR", "0.01")
    monkeypatch.setenv("LENSGUARD_SEGMENTER_IMAGE_SIZE", "128x64")
    monkeypatch.setenv("LENSGUARD_DEVICE", "cpu")
    settings = Settings(_env_file=None)
    assert zero_shot_config(settings).model_name == "ViT-B-32"
    assert finetune_config(settings).lr == 0.01 and finetune_config(settings).device == "cpu"
    assert segmenter_config(settings).image_size == (128, 64)


def test_grids_are_cols_by_rows_and_the_old_rows_by_cols_name_still_works(monkeypatch):
    monkeypatch.setenv("LENSGUARD_COVERAGE_GRID", "4x2")
    assert segmenter_config(Settings(_env_file=None)).grid == (4, 2)
    monkeypatch.delenv("LENSGUARD_COVERAGE_GRID")
    monkeypatch.setenv("LENSGUARD_TILE_GRID", "2x4")  # deprecated: rows x cols
    with pytest.warns(DeprecationWarning, match="LENSGUARD_COVERAGE_GRID"):
        settings = Settings(_env_file=None)
    assert segmenter_config(settings).grid == (4, 2)


def test_a_malformed_size_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LENSGUARD_SEGMENTER_TILES", "2by2")
    with pytest.raises(ValueError, match="AxB"):
        Settings(_env_file=None)


def test_a_setting_can_come_from_a_file_and_a_variable_wins_over_it(tmp_path, monkeypatch):
    token = tmp_path / "label-studio-token"
    token.write_text("pat-from-file\n")
    (tmp_path / "redis").write_text("redis://:pw@redis:6379/0")
    monkeypatch.setenv("LENSGUARD_LABEL_STUDIO_API_KEY_FILE", str(token))
    monkeypatch.setenv("LENSGUARD_REDIS_URL_FILE", str(tmp_path / "redis"))
    settings = Settings(_env_file=None)
    assert settings.label_studio_api_key.get_secret_value() == "pat-from-file"
    assert settings.redis_url == "redis://:pw@redis:6379/0"
    monkeypatch.setenv("LENSGUARD_LABEL_STUDIO_API_KEY", "from-variable")
    assert Settings(_env_file=None).label_studio_api_key.get_secret_value() == "from-variable"
    monkeypatch.setenv("LENSGUARD_S3_SECRET_ACCESS_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"LENSGUARD_S3_SECRET_ACCESS_KEY_FILE=.*No such file"):
        Settings(_env_file=None)


def test_the_registry_is_local_by_default_and_on_s3_with_the_endpoint_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSGUARD_DATA_DIR", str(tmp_path))
    local = open_model_registry(Settings(_env_file=None))
    assert isinstance(local, ModelRegistry) and local.root == tmp_path / "models"
    (tmp_path / "secret").write_text("s3-secret")
    monkeypatch.setenv("LENSGUARD_MODEL_DIR", "s3://lensguard-models/registry")
    monkeypatch.setenv("LENSGUARD_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("LENSGUARD_S3_ACCESS_KEY_ID", "lensguard")
    monkeypatch.setenv("LENSGUARD_S3_SECRET_ACCESS_KEY_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("LENSGUARD_MODEL_POLL_SECONDS", "2")
    settings = Settings(_env_file=None)
    assert settings.registry_storage_options() == {
        "endpoint_url": "http://minio:9000",
        "config_kwargs": {"s3": {"addressing_style": "path"}},
        "key": "lensguard",
        "secret": "s3-secret",
    }
    remote = open_model_registry(settings)
    assert isinstance(remote, ObjectStoreRegistry) and remote.root == "lensguard-models/registry"
    assert remote.poll_seconds == 2 and remote.cache_dir.is_relative_to(tmp_path / "model-cache")
