"""Bodies of Label Studio's ML-backend protocol as Label Studio 1.23 sends and reads them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Task(_Open):
    id: int | None = None
    data: dict[str, Any]


class SetupRequest(_Open):
    project: str | int | None = None
    label_config: str | None = Field(default=None, alias="schema")
    hostname: str | None = None
    access_token: str | None = None
    model_version: str | None = None
    extra_params: dict[str, Any] | str | None = None


class SetupResponse(BaseModel):
    model_version: str


class PredictRequest(_Open):
    tasks: list[Task]
    project: str | int | None = None
    label_config: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class PredictionOut(_Open):
    result: list[dict[str, Any]]
    score: float | None = None
    model_version: str


class PredictResponse(BaseModel):
    results: list[dict[str, Any]]
    model_version: str


class WebhookEvent(_Open):
    action: str
    project: dict[str, Any] | None = None


class HealthResponse(BaseModel):
    status: str
    model_class: str = "lensguard"
    model_version: str | None = None
    weights: str | None = None
    device: str | None = None
    runtime: dict | None = None  # the image encoder's runtime, its fidelity vs fp32 PyTorch, its batch size
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None


def project_id(project: str | int | dict | None) -> str | None:
    """Label Studio sends the project as '12.1717171717' (id.timestamp) or a number; keep the id."""
    if project is None:
        return None
    if isinstance(project, dict):
        project = project.get("id")
    return str(project).split(".", 1)[0] or None
