"""Bodies of Label Studio's ML-backend protocol as Label Studio 1.23 sends and reads them, validated so that
any malformed body is a 4xx, and described in the OpenAPI schema as they really are."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

MAX_PROJECT_ID = 2**63 - 1
MAX_LABEL_CONFIG_CHARS = 1_000_000  # real labeling configs are a few kB
_PROJECT_TEXT = re.compile(r"[0-9]{1,19}(\.[0-9]{1,32})?")
_PROJECT_TEXT_SCHEMA = {"type": "string", "pattern": r"^[0-9]{1,19}(\.[0-9]{1,32})?$", "examples": ["12.1717171717"]}
_PROJECT_INT_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_PROJECT_ID}


def parse_project(value: object) -> str | None:
    """Label Studio names a project as '12.1717171717' (id.timestamp: /setup, /predict), 12, or {"id": 12, ...}
    (webhooks); the id as a string of digits, or a ValueError (a 422) for anything else."""
    if value is None:
        return None
    if isinstance(value, dict):
        if "id" not in value:
            raise ValueError("the project object has no 'id'")
        value = value["id"]
        if value is None or isinstance(value, dict):
            raise ValueError("the project id must be an integer")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("the project must be an integer id, '<id>.<timestamp>' or an object with an integer 'id'")
    if isinstance(value, str) and not _PROJECT_TEXT.fullmatch(value):
        raise ValueError("the project must look like '12' or '12.1717171717'")
    project = int(str(value).split(".", 1)[0])
    if not 0 <= project <= MAX_PROJECT_ID:
        raise ValueError(f"the project id must be between 0 and {MAX_PROJECT_ID}")
    return str(project)


ProjectId = Annotated[
    str | None,
    BeforeValidator(parse_project),
    WithJsonSchema(
        {
            "anyOf": [
                _PROJECT_TEXT_SCHEMA,
                _PROJECT_INT_SCHEMA,
                {
                    "type": "object",
                    "properties": {"id": _PROJECT_INT_SCHEMA},
                    "required": ["id"],
                    "additionalProperties": True,
                },
                {"type": "null"},
            ],
            "description": "the project: '<id>.<timestamp>' (/setup, /predict), an id, or an object with an id",
        }
    ),
]
TaskId = Annotated[int, Field(ge=0, le=MAX_PROJECT_ID)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Task(_Open):
    id: TaskId | None = None
    data: dict[str, Any] = Field(
        description="the task's data; the image URL sits under the <Image> tag's value name (e.g. 'image'): "
        "a Label Studio path (/data/upload/...), an http(s) URL of an allowed host, or s3://, gs://, azure-blob://",
        json_schema_extra={"examples": [{"image": "/data/upload/1/frame.jpg"}]},
    )


class SetupRequest(_Open):
    project: ProjectId = None
    label_config: str | None = Field(default=None, alias="schema", max_length=MAX_LABEL_CONFIG_CHARS)
    hostname: str | None = None
    access_token: str | None = None
    model_version: str | None = None
    extra_params: dict[str, Any] | str | None = None


class SetupResponse(BaseModel):
    model_version: str


class PredictRequest(_Open):
    tasks: list[Task]
    project: ProjectId = None
    label_config: str | None = Field(default=None, max_length=MAX_LABEL_CONFIG_CHARS)
    params: dict[str, Any] = Field(default_factory=dict)


class PredictionOut(_Open):
    result: list[dict[str, Any]]
    score: float | None = None
    model_version: str


class TaskError(BaseModel):
    task: int | None
    error: str
    model_version: str


class PredictResponse(BaseModel):
    results: list[dict[str, Any] | list[dict[str, Any]]] = Field(
        description="one entry per task, in order: a prediction (result, score, model_version, task, cluster), "
        "{task, error, model_version} for a task whose image could not be read, or an empty list for a task whose "
        "prediction of this version another writer is storing (Label Studio then stores nothing for it)"
    )
    model_version: str


class WebhookEvent(_Open):
    action: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Z_]+$",
        json_schema_extra={"examples": ["ANNOTATION_CREATED", "START_TRAINING", "TASKS_CREATED"]},
    )
    project: ProjectId = None


class WebhookResponse(_Open):
    status: str
    action: str


class HealthResponse(BaseModel):
    status: str
    model_class: str = "lensguard"
    model_version: str | None = None
    weights: str | None = None
    device: str | None = None
    runtime: dict | None = None  # the image encoder's runtime, its fidelity vs fp32 PyTorch, its batch size
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None


class ErrorBody(BaseModel):
    detail: str


class MalformedBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the error answers a route gives."""
    text = {
        400: "malformed body (not JSON) or Content-Length",
        401: "missing or wrong credentials (basic auth or bearer token)",
        404: "not found",
        413: "request body or task count over the limit",
        422: "a body or parameter that does not validate",
        503: "the model is not loaded or the job queue is unavailable",
    }
    return {code: {"model": MalformedBody if code == 422 else ErrorBody, "description": text[code]} for code in codes}


def project_id(project: object) -> str | None:
    """The project id (digits) of a `project` field in any of Label Studio's forms."""
    return parse_project(project)
