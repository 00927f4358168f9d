"""Settings are declared once; each model family's config is built from them, with nothing copied by hand."""

from __future__ import annotations

import dataclasses

import pytest

from models.zero_shot import ZeroShotConfig
from serving.components import zero_shot_config
from settings import Settings
from training.finetune import FinetuneConfig, finetune_config
from training.segment import SegmenterConfig, segmenter_config

NOT_SETTINGS = {"seed"}  # fixed in code, on purpose


@pytest.mark.parametrize(
    ("config_class", "build"),
    [(ZeroShotConfig, zero_shot_config), (FinetuneConfig, finetune_config), (SegmenterConfig, segmenter_config)],
)
def test_every_family_config_comes_from_the_settings_with_the_same_defaults(config_class, build):
    built = build(Settings(_env_file=None))
    for field in dataclasses.fields(config_class):
        if field.name in NOT_SETTINGS:
            continue
        assert getattr(built, field.name) == field.default, f"{config_class.__name__}.{field.name}"


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
