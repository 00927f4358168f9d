"""The end-to-end suite's Label Studio really runs on PostgreSQL: what the API creates is in its database."""

from __future__ import annotations

from pathlib import Path

SOILING_XML = Path(__file__).resolve().parents[2] / "labeling_config" / "soiling.xml"


def test_label_studio_stores_projects_and_tasks_in_postgres(ls_client, label_studio_database, tmp_path):
    project = ls_client.sdk.projects.create(title="stored in postgres", label_config=SOILING_XML.read_text())
    ls_client.request("POST", f"/api/projects/{project.id}/import", json=[{"image": "/data/upload/1/a.jpg"}])
    with label_studio_database.connect() as connection:
        engine = connection.execute("SELECT current_database(), version()").fetchone()
        title = connection.execute("SELECT title FROM project WHERE id = %s", (project.id,)).fetchone()
        tasks = connection.execute("SELECT data->>'image' FROM task WHERE project_id = %s", (project.id,)).fetchall()
    assert engine[0] == label_studio_database.name and engine[1].startswith("PostgreSQL")
    assert title == ("stored in postgres",)
    assert tasks == [("/data/upload/1/a.jpg",)]
