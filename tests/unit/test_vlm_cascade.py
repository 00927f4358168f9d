"""The cascade policy: only the uncertain band goes to the VLM, within caps; the combination rules."""

from __future__ import annotations

import pytest

from models.cascade import CascadeConfig, CascadePolicy, HourlyBudget, VlmRule, combine_with_vlm
from models.verdict import Verdict, binary_uncertainty
from models.vlm import VlmAnswer, VlmVerdict


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_frames_inside_the_band_are_sent_most_uncertain_first_within_the_batch_cap():
    policy = CascadePolicy(CascadeConfig(band=(0.4, 0.9), max_per_batch=2, max_per_hour=100))
    uncertainties = [0.1, 0.5, 0.95, 0.85, None, 0.4, 0.7]
    assert policy.select(uncertainties) == [3, 6]  # 0.85 and 0.7; 0.95 is above the band
    assert CascadePolicy(CascadeConfig(band=(0.4, 0.9), max_per_batch=10)).select(uncertainties) == [1, 3, 5, 6]


def test_the_hourly_cap_holds_across_batches_and_frees_up_after_an_hour():
    clock = FakeClock()
    config = CascadeConfig(band=(0.0, 1.0), max_per_batch=8, max_per_hour=5)
    policy = CascadePolicy(config, HourlyBudget(config.max_per_hour, clock))
    assert policy.select([0.9] * 3) == [0, 1, 2]
    clock.now += 1800
    assert policy.select([0.9] * 3) == [0, 1]
    assert policy.select([0.9] * 3) == []
    clock.now += 1800  # the first three leave the window
    assert policy.select([0.9] * 4) == [0, 1, 2]


def test_a_zero_cap_turns_the_cascade_off():
    assert CascadePolicy(CascadeConfig(max_per_batch=0)).select([0.9, 1.0]) == []
    assert CascadePolicy(CascadeConfig(max_per_hour=0)).select([0.9, 1.0]) == []


@pytest.mark.parametrize("band", [(0.6, 0.4), (-0.1, 0.5), (0.2, 1.5)])
def test_a_bad_band_is_refused(band):
    with pytest.raises(ValueError, match="band"):
        CascadeConfig(band=band)


def test_the_version_names_rule_and_band():
    assert CascadeConfig(band=(0.5, 1.0), rule="vote").version == "cascade1-vote-u0.50-1.00"


SERVED = Verdict(p_dirty=0.45, uncertainty=0.9, type_scores={"Mud": 0.4, "Dust": 0.35}, p_zero_shot=0.45)
DIRTY = VlmAnswer(VlmVerdict.DIRTY, confidence=0.6, soiling_types=("Dust",), sentence="dust on the lens")


def test_override_takes_the_vlm_verdict_and_its_types():
    combined = combine_with_vlm(SERVED, DIRTY, VlmRule.OVERRIDE)
    assert combined.p_dirty == pytest.approx(0.8)
    assert combined.uncertainty == pytest.approx(binary_uncertainty(0.8))
    assert combined.type_scores == {"Dust": 0.6}
    assert combined.is_dirty and "VLM (override)" in combined.source


def test_average_widens_the_uncertainty_with_the_disagreement():
    combined = combine_with_vlm(SERVED, DIRTY, VlmRule.AVERAGE)
    assert combined.p_dirty == pytest.approx(0.625)
    assert combined.uncertainty == pytest.approx(1 - 0.25 * (1 - 0.35))


def test_vote_the_vlm_breaks_a_tie_and_a_majority_wins_over_it():
    assert combine_with_vlm(SERVED, DIRTY, VlmRule.VOTE).is_dirty  # zero-shot vs VLM: the VLM decides
    both = Verdict(p_dirty=0.3, uncertainty=0.8, p_zero_shot=0.4, p_classifier=0.2)
    combined = combine_with_vlm(both, DIRTY, VlmRule.VOTE)  # two clean votes against one dirty
    assert not combined.is_dirty
    assert combined.p_dirty == pytest.approx(0.3)
    assert combined.uncertainty == pytest.approx(1 - 0.4 * 2 / 3)


def test_an_unparsed_answer_leaves_the_served_verdict_alone():
    for rule in VlmRule:
        assert combine_with_vlm(SERVED, VlmAnswer(VlmVerdict.UNPARSED, raw="???"), rule) == SERVED
