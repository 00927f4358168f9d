"""The "lensguard" Data Manager tab: prediction columns visible, everything else hidden, most uncertain first."""

from labelstudio.data_manager import LENSGUARD_TAB, column_ids, default_tab

COLUMNS = [  # the shape of Label Studio 1.23's /api/dm/columns
    {"id": "image", "target": "tasks", "parent": "data"},
    {"id": "lensguard_combined", "target": "tasks", "parent": "data"},
    {"id": "data", "target": "tasks", "children": ["image", "lensguard_combined"]},
    {"id": "id", "target": "tasks"},
    {"id": "total_annotations", "target": "tasks"},
    {"id": "annotators", "target": "tasks"},
    {"id": "predictions_score", "target": "tasks"},
    {"id": "predictions_model_versions", "target": "tasks"},
    {"id": "predictions_results", "target": "tasks"},
    {"id": "file_upload", "target": "tasks"},
]


def test_column_ids_follow_the_data_manager():
    assert column_ids(COLUMNS)[:3] == ["tasks:data.image", "tasks:data.lensguard_combined", "tasks:id"]


def test_default_tab_shows_predictions_sorted_by_score():
    tab = default_tab(COLUMNS)
    assert tab["title"] == LENSGUARD_TAB and tab["ordering"] == ["tasks:predictions_score"]
    hidden = set(tab["hiddenColumns"]["explore"])
    assert hidden == {"tasks:data.lensguard_combined", "tasks:annotators", "tasks:file_upload"}
    assert "tasks:predictions_score" not in tab["hiddenColumns"]["labeling"]
    assert "tasks:predictions_results" in tab["hiddenColumns"]["labeling"]
