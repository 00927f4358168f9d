import io

import numpy as np
import pytest
import torch
from PIL import Image

from models.frames import decode_image
from models.zero_shot import (
    ClipSpec,
    PromptSetError,
    WeightsUnavailableError,
    binary_uncertainty,
    load_clip,
    load_prompt_set,
)
from models.zero_shot.prompts import parse_prompt_set
from models.zero_shot.scorer import clip_class_probabilities, siglip_class_probabilities


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def test_uncertainty_is_one_at_half_and_zero_at_the_ends():
    assert binary_uncertainty(0.5) == pytest.approx(1.0)
    assert binary_uncertainty(0.0) == pytest.approx(0.0)
    assert binary_uncertainty(1.0) == pytest.approx(0.0)
    assert binary_uncertainty(0.8) == pytest.approx(0.4)
    values = binary_uncertainty(np.linspace(0, 1, 101))
    assert values.min() >= 0 and values.max() <= 1


def test_class_embedding_is_the_renormalised_mean_of_prompt_embeddings(tiny_clip):
    prompts = ["a photo from a dirty camera lens", "lens covered with mud", "obstructed camera view"]
    tokens = tiny_clip.clip.tokenizer(prompts)
    with torch.inference_mode():
        each = tiny_clip.clip.model.encode_text(tokens, normalize=True)
    expected = each.mean(0) / each.mean(0).norm()
    got = tiny_clip.class_embeddings([prompts])[0]
    assert torch.allclose(got, expected, atol=1e-5)
    assert got.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_text_embeddings_are_computed_once_per_prompt_set(tiny_clip, monkeypatch):
    groups = [["clean lens"], ["dirty lens"]]
    tiny_clip.class_embeddings(groups)
    calls = []
    original = tiny_clip.clip.model.encode_text
    monkeypatch.setattr(tiny_clip.clip.model, "encode_text", lambda *a, **k: calls.append(1) or original(*a, **k))
    embeddings = unit(np.random.default_rng(0).normal(size=(5, 64)))
    tiny_clip.class_probabilities(embeddings, groups)
    tiny_clip.class_probabilities(embeddings, groups)
    assert calls == []


def test_clip_head_is_a_softmax_over_scaled_similarities(tiny_clip):
    rng = np.random.default_rng(1)
    embeddings = unit(rng.normal(size=(6, 64)))
    classes = tiny_clip.prompt_set.classes
    groups = [classes["clean"], classes["dirty"]]
    text = tiny_clip.class_embeddings(groups).numpy()
    logits = embeddings @ text.T * tiny_clip.clip.model.logit_scale.exp().item()
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(tiny_clip.class_probabilities(embeddings, groups), expected, rtol=1e-4)
    results = tiny_clip.score(embeddings)
    np.testing.assert_allclose([r.p_dirty for r in results], expected[:, 1], rtol=1e-4)
    np.testing.assert_allclose([r.uncertainty for r in results], 1 - np.abs(2 * expected[:, 1] - 1), rtol=1e-4)


def test_siglip_head_uses_sigmoid_with_bias_not_softmax(tiny_siglip):
    assert tiny_siglip.clip.is_siglip
    rng = np.random.default_rng(2)
    embeddings = unit(rng.normal(size=(6, 64)))
    classes = tiny_siglip.prompt_set.classes
    groups = [classes["clean"], classes["dirty"]]
    text = tiny_siglip.class_embeddings(groups).numpy()
    model = tiny_siglip.clip.model
    logits = embeddings @ text.T * model.logit_scale.exp().item() + model.logit_bias.item()
    sig = 1 / (1 + np.exp(-logits))
    expected = sig / sig.sum(1, keepdims=True)
    np.testing.assert_allclose(tiny_siglip.class_probabilities(embeddings, groups), expected, rtol=1e-4)
    type_probs = tiny_siglip.type_probabilities(embeddings, ["mud", "water drops", "dust"])
    assert not np.allclose(type_probs.sum(1), 1.0), "types are independent sigmoids for SigLIP"


def test_siglip_normalisation_differs_from_softmax_when_the_bias_matters():
    logits = torch.tensor([[2.0, 4.0], [-12.0, -10.0]])
    softmax = clip_class_probabilities(logits)
    sigmoid = siglip_class_probabilities(logits)
    assert torch.allclose(softmax[0], softmax[1])  # softmax only sees the difference
    assert not torch.allclose(sigmoid[0], sigmoid[1])  # two strong matches are less decisive than two weak ones
    assert torch.allclose(sigmoid.sum(1), torch.ones(2))


def test_soiling_types_from_config_labels_use_aliases_or_templates(tiny_clip):
    prompt_set = tiny_clip.prompt_set
    assert prompt_set.prompts_for_type("Water-Drops") == prompt_set.types["water drops"].prompts
    assert prompt_set.prompts_for_type("raindrops") == prompt_set.types["water drops"].prompts
    assert prompt_set.prompts_for_type("bird droppings") == (
        "a camera lens covered with bird droppings",
        "bird droppings on the camera lens",
    )
    embeddings = unit(np.random.default_rng(3).normal(size=(2, 64)))
    [result, _] = tiny_clip.score(embeddings, ["mud", "bird droppings"])
    assert set(result.type_scores) == {"mud", "bird droppings"}
    assert sum(result.type_scores.values()) == pytest.approx(1.0, abs=1e-5)


def test_image_embeddings_are_normalised_and_batched_consistently(tiny_clip):
    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)) for _ in range(5)]
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    pixels = [decode_image(data, tiny_clip.clip.image_size, 10**8) for data in encoded]
    assert pixels[0].shape == (64, 64, 3)
    batched = tiny_clip.encode_images(pixels)
    single = np.concatenate([tiny_clip.encode_images([p]) for p in pixels])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_version_names_model_weights_and_prompt_set(tiny_clip):
    assert tiny_clip.version.startswith("zeroshot-lensguard-tiny-ViT-RANDOM-soiling-v1-")


def test_missing_weights_are_a_clear_error_unless_random_is_allowed(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_clip(ClipSpec("lensguard-tiny-ViT", pretrained=str(missing)))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="LENSGUARD_ALLOW_RANDOM_WEIGHTS"):
        load_clip(ClipSpec("lensguard-tiny-ViT", pretrained=str(corrupt)))
    loaded = load_clip(ClipSpec("lensguard-tiny-ViT", pretrained=str(corrupt), allow_random_weights=True))
    assert loaded.random_weights and loaded.warnings


def test_local_checkpoint_loads_exactly(tmp_path, tiny_clip):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_clip.clip.model.state_dict(), path)
    loaded = load_clip(ClipSpec("lensguard-tiny-ViT", pretrained=str(path), device="cpu"))
    assert loaded.weights.startswith("file:tiny-") and not loaded.random_weights
    for key, value in tiny_clip.clip.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_unknown_model_name_is_rejected():
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_clip(ClipSpec("ViT-Nonexistent-99", pretrained=None))


def test_prompt_set_files_are_validated(tmp_path):
    assert load_prompt_set("soiling-v1").classes["dirty"]
    with pytest.raises(PromptSetError, match="not found"):
        load_prompt_set("no-such-set")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PromptSetError, match="invalid JSON"):
        load_prompt_set(bad)
    with pytest.raises(PromptSetError, match="exactly the keys"):
        parse_prompt_set({"classes": {"dirty": ["x"]}})
    with pytest.raises(PromptSetError, match="non-empty list"):
        parse_prompt_set({"classes": {"clean": [], "dirty": ["x"]}})


def test_prompt_set_tag_changes_with_content():
    base = {"name": "s", "version": "1", "classes": {"clean": ["a"], "dirty": ["b"]}}
    changed = {"name": "s", "version": "1", "classes": {"clean": ["a"], "dirty": ["c"]}}
    assert parse_prompt_set(base).tag != parse_prompt_set(changed).tag
