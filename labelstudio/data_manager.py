"""The "lensguard" Data Manager tab that a project gets when the backend connects: what the model said about each
frame (the prediction's choices and explanation with P(dirty), its score, its model version) in plain view, the
most uncertain frames first."""

from __future__ import annotations

LENSGUARD_TAB = "lensguard"
# Label Studio hides the prediction columns by default; this tab shows them.
EXPLORE_COLUMNS = (
    "tasks:id",
    "tasks:data.image",
    "tasks:predictions_score",  # the confidence 1 - uncertainty: ascending = most uncertain first
    "tasks:predictions_results",  # the soiling choice, soiling types and the explanation text with P(dirty)
    "tasks:predictions_model_versions",
    "tasks:total_annotations",
)
LABELING_COLUMNS = ("tasks:id", "tasks:predictions_score")
SCORE_COLUMN = "tasks:predictions_score"


def column_ids(columns: list[dict]) -> list[str]:
    """Data Manager column ids (`tasks:id`, `tasks:data.image`) from /api/dm/columns."""
    ids = []
    for column in columns:
        if column.get("children"):
            continue  # the `data` root: its children are listed themselves
        parent = f"{column['parent']}." if column.get("parent") else ""
        ids.append(f"{column.get('target', 'tasks')}:{parent}{column['id']}")
    return ids


def default_tab(columns: list[dict]) -> dict:
    """The tab's view data: prediction columns visible, sorted by score ascending (most uncertain first)."""
    ids = column_ids(columns)
    return {
        "title": LENSGUARD_TAB,
        "type": "list",
        "target": "tasks",
        "filters": {"conjunction": "and", "items": []},
        "ordering": [SCORE_COLUMN],
        "hiddenColumns": {
            "explore": [c for c in ids if c not in EXPLORE_COLUMNS],
            "labeling": [c for c in ids if c not in LABELING_COLUMNS],
        },
        "columnsDisplayType": {},
    }
