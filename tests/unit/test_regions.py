"""The explanation annotators read says what each number is, and says when the model's weights are random."""

from labelstudio.label_config import parse_soiling_config
from labelstudio.regions import explanation_text, note_random_weights, prediction_for
from models.verdict import Verdict


def test_a_clean_verdict_names_p_dirty_the_choice_score_and_the_confidence():
    verdict = Verdict(p_dirty=0.45, uncertainty=0.9, p_zero_shot=0.45)
    text = explanation_text(verdict, [])
    assert text.startswith("zero-shot CLIP: lens clean: P(dirty)=0.45, so P(clean)=0.55 (the choice's score);")
    assert "confidence 0.10 (1 = certain, 0 = a coin toss; the prediction score" in text


def test_a_dirty_verdict_with_a_classifier_and_types():
    verdict = Verdict(0.8, 0.4, {"mud": 0.6, "dust": 0.1}, 0.7, 0.9, "probe classifier + zero-shot CLIP")
    text = explanation_text(verdict, ["mud"])
    assert text.startswith("probe classifier + zero-shot CLIP: lens dirty: P(dirty)=0.80 (the choice's score);")
    assert "P(dirty) by the classifier 0.90, by zero-shot 0.70; likely mud (0.60) (type scores)" in text


def test_random_weights_are_said_where_annotators_read(soiling_config):
    prediction = prediction_for(parse_soiling_config(soiling_config), Verdict(0.3, 0.6), "zeroshot-x-RANDOM")
    choice = next(r for r in prediction["result"] if r["from_name"] == "soiling")
    assert choice["score"] == 0.7 and prediction["score"] == 0.4
    note_random_weights(prediction)
    text = next(r for r in prediction["result"] if r["type"] == "textarea")["value"]["text"][0]
    assert text.endswith("MODEL HAS RANDOM WEIGHTS: these numbers are meaningless")
