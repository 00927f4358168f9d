"""Label Studio API client for lensguard's own calls: projects, ML backend connection, imports, predictions."""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path

import httpx
from label_studio_sdk import LabelStudio

from labelstudio.data_manager import LENSGUARD_TAB, column_ids, default_tab
from labelstudio.tokens import LabelStudioAuth

log = logging.getLogger(__name__)
WEBHOOK_ACTIONS = (
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "TASKS_CREATED",
)


# what `tasks` returns: a task as Label Studio lists it with fields=all
FULL_TASK = ("id", "data", "meta", "annotations", "predictions", "drafts", "total_annotations", "total_predictions")
IDS_PER_QUERY = 100  # task ids per request (URL length: proxies in front of Label Studio cap it near 8 KB)
SERIALIZED_ONLY_WITH_ALL = {"annotations", "predictions", "drafts"}
# Data Manager columns Label Studio computes per query (empty unless shown or filtered on)
COMPUTED_COLUMNS = {
    "predictions_model_versions",
    "predictions_score",
    "predictions_results",
    "annotations_results",
    "annotations_ids",
    "annotators",
    "completed_at",
}


class LabelStudioError(RuntimeError):
    pass


class ActionUnavailable(LabelStudioError):
    """The server has no Data Manager action of that id."""


class LabelStudioClient:
    def __init__(self, url: str, api_key: str, timeout: float = 120.0, page_size: int = 500):
        self.url = url.rstrip("/")
        self.page_size = page_size  # tasks per page of `iter_tasks`
        self.auth = LabelStudioAuth(self.url, api_key)
        try:
            self.sdk = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout)
        except Exception as exc:  # the SDK refreshes a personal access token at construction
            raise LabelStudioError(f"cannot authenticate to Label Studio at {self.url}: {exc}") from exc
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, headers=self.auth.header(), **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio at {self.url} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise LabelStudioError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:500]}")
        return response

    # projects -------------------------------------------------------------------------------------------
    def find_project(self, title: str) -> dict | None:
        for project in self.request("GET", "/api/projects", params={"page_size": 1000}).json()["results"]:
            if project["title"] == title:
                return project
        return None

    def ensure_project(self, title: str, label_config: str, **fields) -> tuple[dict, bool]:
        """(project, created): reuse a project of that title, updating its config if it changed."""
        existing = self.find_project(title)
        if existing is None:
            project = self.sdk.projects.create(title=title, label_config=label_config, **fields)
            return self.project(project.id), True
        if existing.get("label_config", "").strip() != label_config.strip():
            self.request("PATCH", f"/api/projects/{existing['id']}", json={"label_config": label_config})
        return self.project(existing["id"]), False

    def project(self, project_id: int) -> dict:
        return self.request("GET", f"/api/projects/{project_id}").json()

    def feature_flags(self) -> dict[str, object] | None:
        """The server's feature flags (its `/feature-flags/` page, JSON inside <pre>), or None if unreadable (the
        page takes session or JWT auth: a personal access token reads it, a legacy token does not)."""
        try:
            response = self._http.get("/feature-flags/", headers=self.auth.header())
            text = response.text.strip().removeprefix("<pre>").removesuffix("</pre>")
            flags = json.loads(text) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return flags if isinstance(flags, dict) else None

    def update_project(self, project_id: int, **fields) -> dict:
        return self.request("PATCH", f"/api/projects/{project_id}", json=fields).json()

    # ML backend -----------------------------------------------------------------------------------------
    def ensure_ml_backend(
        self,
        project_id: int,
        url: str,
        title: str = "lensguard",
        basic_auth: tuple[str, str] | None = None,
        api_token: str | None = None,
    ) -> dict:
        """Connect the backend at `url` to the project (Label Studio checks /health and /setup first), with its
        credentials: basic auth on the ML connection, and on the webhook the bearer token (else basic auth).

        The backend's webhook is created first, carrying the credentials: Label Studio's automatic ML webhook
        would be sent without them. An existing connection gets the current credentials (token rotation). The
        project gets the "lensguard" Data Manager tab."""
        self.ensure_default_tab(project_id)
        if api_token:
            headers = {"Authorization": f"Bearer {api_token}"}
        elif basic_auth:
            headers = {"Authorization": "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()}
        else:
            headers = {}
        self.ensure_webhook(project_id, url.rstrip("/") + "/webhook", WEBHOOK_ACTIONS, headers)
        auth: dict = {}
        if basic_auth:
            auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        for backend in self.request("GET", "/api/ml", params={"project": project_id}).json():
            if backend["url"].rstrip("/") == url.rstrip("/"):
                if auth:  # Label Studio re-checks /health and /setup with the url and project of the body
                    body = {"url": backend["url"], "project": project_id, **auth}
                    return self.request("PATCH", f"/api/ml/{backend['id']}", json=body).json()
                return backend
        body: dict = {"project": project_id, "url": url, "title": title, "is_interactive": False, **auth}
        return self.request("POST", "/api/ml", json=body).json()

    def ensure_webhook(self, project_id: int, url: str, actions: Sequence[str], headers: dict[str, str]) -> dict:
        for hook in self.request("GET", "/api/webhooks/", params={"project": project_id}).json():
            if hook["url"] == url:
                return self.request(
                    "PATCH", f"/api/webhooks/{hook['id']}/", json={"actions": list(actions), "headers": headers}
                ).json()
        body = {
            "project": project_id,
            "url": url,
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": list(actions),
            "headers": headers,
            "is_active": True,
        }
        return self.request("POST", "/api/webhooks/", json=body).json()

    # Data Manager tabs -----------------------------------------------------------------------------------
    def ensure_view(self, project_id: int, title: str, data: dict) -> dict:
        """Create the Data Manager tab of that title, or update it to `data`."""
        for view in self.request("GET", "/api/dm/views", params={"project": project_id}).json():
            if (view.get("data") or {}).get("title") == title:
                body = {"project": project_id, "data": data}
                return self.request("PATCH", f"/api/dm/views/{view['id']}", json=body).json()
        return self.request("POST", "/api/dm/views", json={"project": project_id, "data": data}).json()

    def ensure_default_tab(self, project_id: int) -> dict:
        """The "lensguard" tab: P(dirty) (in the prediction's text), score, model version and soiling type
        visible, most uncertain first."""
        columns = self.request("GET", "/api/dm/columns", params={"project": project_id}).json()["columns"]
        return self.ensure_view(project_id, LENSGUARD_TAB, default_tab(columns))

    # tasks and predictions ------------------------------------------------------------------------------
    def upload_images(self, project_id: int, paths: Iterable[Path], batch: int = 50) -> int:
        """Upload image files as tasks; returns how many tasks were created."""
        created = 0
        paths = list(paths)
        for start in range(0, len(paths), batch):
            files = [  # Label Studio keeps one file per form field: name each field apart
                (f"file{i}", (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream"))
                for i, p in enumerate(paths[start : start + batch])
            ]
            response = self.request("POST", f"/api/projects/{project_id}/import", files=files)
            created += int(response.json().get("task_count", 0))
        return created

    def tasks(self, project_id: int, ids: Sequence[int] | None = None) -> list[dict]:
        """All tasks of the project (or just `ids`) with annotations and predictions, in one list: for small
        projects and tests; jobs stream with `iter_tasks`."""
        return list(self.iter_tasks(project_id, fields=FULL_TASK, ids=ids))

    def iter_tasks(
        self,
        project_id: int,
        fields: Collection[str] = ("id", "data"),
        filters: Sequence[dict] = (),
        ids: Sequence[int] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict]:
        """The project's tasks (or just `ids`) in id order, a page at a time, each with only `fields`.

        Pages by keyset (Data Manager filter `id > last id`, ordered by id): every page costs the same at any
        depth, where offset paging rescans the skipped rows. `fields`: task keys kept; `annotations`,
        `predictions` or `drafts` make Label Studio serialize them (`fields=all`), Data Manager columns such as
        `predictions_model_versions` or `annotations_results` are computed only when asked for. `filters`:
        Data Manager filter items (`{"filter": "filter:tasks:total_annotations", "operator": "greater",
        "type": "Number", "value": 0}`), combined with "and"."""
        wanted = set(fields) | {"id"}
        params: dict = {"project": project_id, "page_size": page_size or self.page_size, "page": 1}
        if wanted & SERIALIZED_ONLY_WITH_ALL:
            params["fields"] = "all"
        query: dict = {"ordering": ["tasks:id"]}
        computed = wanted & COMPUTED_COLUMNS
        if computed:  # Label Studio computes the columns a query does not hide
            every = column_ids(self.request("GET", "/api/dm/columns", params={"project": project_id}).json()["columns"])
            hidden = [c for c in every if c.removeprefix("tasks:") not in computed]
            query["hiddenColumns"] = {"explore": hidden, "labeling": hidden}
        if ids is None:
            yield from self._pages(params, query, filters, wanted)
            return
        ordered = sorted(set(ids))
        for start in range(0, len(ordered), IDS_PER_QUERY):  # the ids travel in the URL: keep it short
            query["selectedItems"] = {"all": False, "included": ordered[start : start + IDS_PER_QUERY]}
            yield from self._pages(params, query, filters, wanted)

    def _pages(self, params: dict, query: dict, filters: Sequence[dict], wanted: set[str]) -> Iterator[dict]:
        """Keyset pages: tasks with an id above the last one seen, in id order."""
        last = 0
        while True:
            after = {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": last}
            query = {**query, "filters": {"conjunction": "and", "items": [*filters, after]}}
            response = self._http.get(
                "/api/tasks", params={**params, "query": json.dumps(query)}, headers=self.auth.header()
            )
            if response.status_code == 404:  # an empty selection
                return
            if response.status_code >= 400:
                raise LabelStudioError(f"GET /api/tasks -> HTTP {response.status_code}: {response.text[:300]}")
            page = response.json()["tasks"]
            for task in page:
                yield {key: value for key, value in task.items() if key in wanted}
            if len(page) < params["page_size"]:
                return
            last = page[-1]["id"]

    def retrieve_predictions(self, project_id: int, task_ids: Sequence[int] | None = None) -> None:
        """Ask Label Studio to call the ML backend for these tasks (all tasks when None)."""
        selected = {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": list(task_ids)}
        self.request(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": selected},
        )

    def set_data_field(self, project_id: int, task_ids: Sequence[int], name: str, value: float) -> None:
        """Set `data[name]` = `value` (a number) on these tasks in one request: the Data Manager's "Add Or Modify
        Data Field" action (`add_data_field`; hidden from the UI as experimental, callable through the API),
        which changes only that key. Raises ActionUnavailable where the server lacks it."""
        if not task_ids:
            return
        body = {
            "selectedItems": {"all": False, "included": list(task_ids)},
            "value_name": name,
            "value_type": "Number",
            "value": value,
        }
        try:
            self.request("POST", "/api/dm/actions", params={"id": "add_data_field", "project": project_id}, json=body)
        except LabelStudioError as exc:  # its message holds the answer's text, which names an unknown action
            if "add_data_field" in str(exc):
                raise ActionUnavailable(f"Label Studio at {self.url} has no add_data_field action") from exc
            raise

    def annotate(self, task_id: int, result: list[dict]) -> dict:
        return self.request("POST", f"/api/tasks/{task_id}/annotations", json={"result": result}).json()

    def import_predictions(self, project_id: int, predictions: Sequence[dict]) -> None:
        """Bulk-create predictions: [{"task", "result", "score", "model_version"}, ...]."""
        if not predictions:
            return
        try:
            self.sdk.projects.import_predictions(project_id, request=list(predictions))
        except Exception as exc:  # the SDK raises its own ApiError and httpx errors
            message = f"importing {len(predictions)} predictions into project {project_id}: {exc}"
            raise LabelStudioError(message) from exc

    def set_prediction_cluster(self, prediction_id: int, cluster: int) -> None:
        """Label Studio's bulk import drops `cluster`; this per-prediction update is the one way to store it."""
        self.request("PATCH", f"/api/predictions/{prediction_id}/", json={"cluster": cluster})

    def predictions(self, project_id: int) -> list[dict]:
        return self.request("GET", "/api/predictions", params={"project": project_id}).json()
