from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from labelstudio.brush import brush_regions, mask_to_rle, rle_to_mask
from labelstudio.label_config import parse_soiling_config
from labelstudio.masks import frame_mask
from training.synthetic import make_frames

CONFIG = (Path(__file__).resolve().parents[2] / "labeling_config" / "soiling.xml").read_text()


def stroke(mask: np.ndarray, label: str, stroke_id: str = "s") -> dict:
    height, width = mask.shape
    return {
        "id": stroke_id,
        "from_name": "dirt_mask",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
    }


def choice(label: str) -> dict:
    return {"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [label]}}


def test_rle_round_trips_with_label_studio_sdk_both_ways():
    frame = make_frames(1, 97, 53, dirty_fraction=1.0, seed=5)[0]
    mask = frame.mask > 0
    ours = mask_to_rle(mask)
    np.testing.assert_array_equal(decode_rle(ours).reshape(53, 97, 4)[:, :, 3] > 0, mask)
    sdk = mask2rle(np.where(mask, 255, 0).astype(np.uint8))
    np.testing.assert_array_equal(rle_to_mask(sdk, 97, 53), mask)


def test_overlapping_strokes_resolve_by_severity():
    tags = parse_soiling_config(CONFIG)
    transparent = np.zeros((20, 30), bool)
    transparent[2:12, 2:20] = True
    opaque = np.zeros((20, 30), bool)
    opaque[5:15, 10:25] = True
    result = [choice("dirty"), stroke(opaque, "opaque", "a"), stroke(transparent, "transparent", "b")]
    framed = frame_mask(result, tags)
    assert framed.status == "masked" and not framed.problems
    assert framed.mask[6, 12] == 3, "opaque wins where strokes overlap"
    assert framed.mask[3, 3] == 1 and framed.mask[18, 1] == 0
    regions = brush_regions(framed.mask, tags)
    assert [r["value"]["brushlabels"] for r in regions] == [["transparent"], ["opaque"]]
    np.testing.assert_array_equal(rle_to_mask(regions[1]["value"]["rle"], 30, 20), framed.mask == 3)


def test_clean_without_strokes_is_all_clear_and_dirty_without_strokes_is_left_out():
    tags = parse_soiling_config(CONFIG)
    assert frame_mask([choice("clean")], tags).status == "clean"
    assert frame_mask([choice("dirty")], tags).status == "dirty-without-strokes"
    assert frame_mask([], tags).status == "unlabelled"


def test_an_rle_whose_size_does_not_match_is_reported_and_skipped():
    tags = parse_soiling_config(CONFIG)
    good = np.zeros((20, 30), bool)
    good[1:5, 1:5] = True
    bad = stroke(good, "opaque", "bad")
    bad["original_width"] = 31
    framed = frame_mask([choice("dirty"), bad, stroke(good, "transparent", "good")], tags)
    assert framed.status == "masked" and framed.mask.max() == 1
    assert len(framed.problems) == 1 and "stroke bad" in framed.problems[0] and "31x20" in framed.problems[0]
    only_bad = frame_mask([choice("dirty"), bad], tags)
    assert only_bad.status == "unreadable" and only_bad.mask is None


def test_synthetic_dataset_files_hold_exact_masks(tmp_path):
    from PIL import Image

    from training.synthetic import write_dataset

    manifest = write_dataset(tmp_path, 6, 64, 48, dirty_fraction=0.5, seed=9)
    rows = manifest.read_text().splitlines()[1:]
    assert len(rows) == 6
    expected = make_frames(6, 64, 48, dirty_fraction=0.5, seed=9)
    for row, frame in zip(rows, expected, strict=True):
        image, mask, label, _, _ = row.split(",")
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / mask)), frame.mask)
        assert label == ("dirty" if frame.mask.any() else "clean")
        assert Image.open(tmp_path / image).size == (64, 48)
