import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.verdict import recentre
from models.zero_shot.prompts import parse_prompt_set
from training.prompt_eval import Candidate, candidates_for_model, evaluate, greedy_ensemble, p_dirty
from training.prompt_report import write_report

SET_A = {"name": "a", "version": "1", "classes": {"clean": ["clean lens", "clear view"], "dirty": ["dirty lens"]}}
SET_B = {"name": "b", "version": "1", "classes": {"clean": ["clean lens"], "dirty": ["mud on lens", "wet lens"]}}


def toy_embeddings(scorer, n=60, seed=0):
    """Images near the 'dirty lens' text embedding are dirty: a problem prompts can actually solve."""
    rng = np.random.default_rng(seed)
    text = scorer.class_embeddings([["dirty lens"], ["clean lens"]]).numpy()
    labels = rng.integers(0, 2, n)
    embeddings = np.where(labels[:, None] == 1, text[0], text[1]) + rng.normal(0, 0.08, (n, text.shape[1]))
    return (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32), labels


def test_candidates_cover_single_prompts_and_whole_sets(tiny_clip):
    sets = [parse_prompt_set(SET_A), parse_prompt_set(SET_B)]
    found = candidates_for_model(tiny_clip, sets, "tiny")
    kinds = [c.kind for c in found]
    assert kinds.count("set") == 2
    singles = {c.name for c in found if c.kind == "prompt"}
    assert {"clean: clean lens", "clean: clear view", "dirty: mud on lens", "dirty: wet lens"} <= singles
    assert "dirty: dirty lens" not in singles, "set a's only dirty prompt against its clean set is set a itself"
    assert len({(c.clean, c.dirty) for c in found}) == len(found), "no duplicate candidates"


def test_greedy_ensemble_never_does_worse_than_the_best_pair_on_its_selection_split(tiny_clip):
    embeddings, labels = toy_embeddings(tiny_clip)
    pool_clean, pool_dirty = ["clean lens", "clear view", "sharp photo"], ["dirty lens", "mud on lens", "wet lens"]
    clean, dirty, trace = greedy_ensemble(tiny_clip, embeddings, labels, pool_clean, pool_dirty)
    assert set(clean) <= set(pool_clean) and set(dirty) <= set(pool_dirty)
    best_pair = max(
        roc_auc_score(labels, p_dirty(tiny_clip, embeddings, [c], [d])) for c in pool_clean for d in pool_dirty
    )
    final = roc_auc_score(labels, p_dirty(tiny_clip, embeddings, clean, dirty))
    assert final >= best_pair - 1e-9
    assert final == pytest.approx(trace[-1]["roc_auc"])
    assert [step["roc_auc"] for step in trace] == sorted(step["roc_auc"] for step in trace)


def test_thresholds_come_from_the_selection_split_only(tiny_clip):
    embeddings, labels = toy_embeddings(tiny_clip, seed=1)
    select, report = np.arange(30), np.arange(30, 60)
    scores = p_dirty(tiny_clip, embeddings, ["clean lens"], ["dirty lens"])
    first = evaluate(
        Candidate("x", "set", "m", p_select=scores[select], p_report=scores[report]), labels, select, report, None
    )
    flipped = labels.copy()
    flipped[report] = 1 - flipped[report]
    second = evaluate(
        Candidate("x", "set", "m", p_select=scores[select], p_report=scores[report]), flipped, select, report, None
    )
    assert first.threshold == second.threshold, "report labels never influence the threshold"
    assert first.metrics["roc_auc"] == pytest.approx(roc_auc_score(labels[report], scores[report]))
    assert first.metrics["roc_auc"] == pytest.approx(1 - second.metrics["roc_auc"])


def test_report_files_hold_the_table_plots_and_per_frame_scores(tiny_clip, tmp_path):
    embeddings, labels = toy_embeddings(tiny_clip, seed=2)
    select, report = np.arange(30), np.arange(30, 60)
    candidates = []
    for name, kind, clean, dirty in [
        ("set a", "set", ["clean lens"], ["dirty lens"]),
        ("ens", "ensemble", ["clear view"], ["wet lens"]),
    ]:
        scores = p_dirty(tiny_clip, embeddings, clean, dirty)
        candidate = Candidate(name, kind, "tiny", tuple(clean), tuple(dirty), scores[select], scores[report])
        candidates.append(evaluate(candidate, labels, select, report, None))
    thumbnails = [b"\xff\xd8fake"] * 30
    html_path, json_path = write_report(
        tmp_path,
        7,
        candidates,
        labels[report],
        thumbnails,
        list(range(100, 130)),
        candidates[0],
        {"split": {"select": 30, "report": 30}},
    )
    document = json.loads(json_path.read_text())
    assert document["recommended"]["name"] == "set a"
    assert len(document["rows"]) == 2 and len(document["rows"][0]["p_dirty_report"]) == 30
    aucs = [row["metrics"]["roc_auc"] for row in document["rows"]]
    assert aucs == sorted(aucs, reverse=True)
    page = html_path.read_text()
    assert "data:image/png;base64," in page and "data:image/jpeg;base64," in page
    assert "lensguard prompts use" in page and "set a" in page


def test_recentre_puts_the_threshold_at_one_half():
    p = np.array([0.0, 0.1, 0.3, 0.65, 1.0])
    out = recentre(p, 0.3)
    assert out[2] == pytest.approx(0.5) and out[0] == 0 and out[-1] == 1
    assert np.all(np.diff(out) > 0)
    np.testing.assert_array_equal(recentre(p, 0.5), p)


def test_prompt_set_threshold_is_validated_and_named_in_the_tag():
    with_threshold = parse_prompt_set({**SET_A, "threshold": 0.3})
    assert with_threshold.tag.endswith("-t0.300")
    assert parse_prompt_set(SET_A).tag.count("-t") == 0
    with pytest.raises(ValueError, match="threshold"):
        parse_prompt_set({**SET_A, "threshold": 1.5})
    assert parse_prompt_set(with_threshold.to_json()).digest == with_threshold.digest
