"""A local, in-memory Argilla server for tests, benchmarks and demos: the part of Argilla 2.x's HTTP API that the
official ``argilla`` SDK uses to connect, create or find a dataset, and push records.

It keeps workspaces, datasets (with their fields, questions and metadata properties) and records in memory,
checks records as Argilla does (known fields, required fields, text values, metadata kinds, suggestion values),
upserts them by external id, and can answer chosen requests with an error or a delay (429 with ``Retry-After``,
500, a hang past the client's timeout). Nothing leaves 127.0.0.1.

Usage::

    import argilla as rg
    from beam_distil.testing.argilla_server import ArgillaTestServer

    with ArgillaTestServer(api_key="argilla.apikey", workspaces=["team"]) as server:
        client = rg.Argilla(api_url=server.api_url, api_key="argilla.apikey")
        ...                                          # or run a pipeline with TextGenerationToArgilla(api_url=...)
        server.fail_next(429, path="/records/bulk")  # the next record push gets a 429
        print(server.records("my-dataset"))          # [{"external_id", "fields", "metadata", "suggestions"}, ...]

From a shell (runs until Ctrl+C)::

    python -m beam_distil.testing.argilla_server --port 6900 --api-key argilla.apikey --workspace argilla

Endpoints (all under ``/api/v1``): ``GET /me``, ``GET /me/workspaces``, ``GET|POST /workspaces``,
``GET /workspaces/{id}``, ``GET /me/datasets``, ``POST /datasets``, ``GET|PATCH|DELETE /datasets/{id}``,
``PUT /datasets/{id}/publish``, ``GET|POST /datasets/{id}/fields``, ``GET|POST /datasets/{id}/questions``,
``GET /datasets/{id}/vectors-settings``, ``GET /me/datasets/{id}/metadata-properties``,
``POST /datasets/{id}/metadata-properties``, ``GET /datasets/{id}/records``,
``POST|PUT /datasets/{id}/records/bulk``. Every request needs the ``X-Argilla-Api-Key`` header (401 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from aiohttp import web

from beam_distil.testing.local_server import LocalHTTPServer

__all__ = ["ArgillaTestServer", "main"]

API_KEY_HEADER = "X-Argilla-Api-Key"

_NOT_JSON = object()


class _Refused(Exception):
    """Ends a request with ``status`` and ``{"detail": detail}``, as Argilla's errors look."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class _Fault:
    status: Optional[int]
    remaining: int
    path: str
    method: Optional[str]
    retry_after: Optional[float]
    delay: float


@dataclass
class _Dataset:
    id: str
    name: str
    workspace_id: str
    status: str = "draft"
    guidelines: Optional[str] = None
    allow_extra_metadata: bool = True
    distribution: Dict[str, Any] = field(default_factory=lambda: {"strategy": "overlap", "min_submitted": 1})
    inserted_at: str = ""
    updated_at: str = ""
    fields: List[Dict[str, Any]] = field(default_factory=list)
    questions: List[Dict[str, Any]] = field(default_factory=list)
    metadata_properties: List[Dict[str, Any]] = field(default_factory=list)
    records: List[Dict[str, Any]] = field(default_factory=list)
    bulk_sizes: List[int] = field(default_factory=list)

    def as_json(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "guidelines": self.guidelines,
            "allow_extra_metadata": self.allow_extra_metadata,
            "status": self.status,
            "distribution": self.distribution,
            "metadata": None,
            "workspace_id": self.workspace_id,
            "last_activity_at": self.updated_at,
            "inserted_at": self.inserted_at,
            "updated_at": self.updated_at,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _items(values: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    return {"items": list(values)}


class ArgillaTestServer(LocalHTTPServer):
    """An Argilla 2.x API on 127.0.0.1 with its state in memory, served from a background thread.

    Args:
        api_key: the one key it accepts.
        workspaces: the workspaces that exist (the key's user belongs to all of them).
        username: the key's user, an ``owner``.
        echo_api_key_in_errors: put the key it received in its error answers, as a careless proxy might; tests
            use it to check that a client keeps the key out of its own messages and logs.
    """

    thread_name = "argilla-test-server"
    keeps_chosen_port = True
    client_max_size = 256 * 1024 * 1024  # record pushes of a large dataset

    def __init__(
        self,
        *,
        api_key: str = "argilla.apikey",
        workspaces: Iterable[str] = ("argilla",),
        username: str = "owner",
        host: str = "127.0.0.1",
        port: int = 0,
        echo_api_key_in_errors: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, shutdown_timeout=1.0)
        self.api_key = api_key
        self.echo_api_key_in_errors = echo_api_key_in_errors
        now = _now()
        self._user = {
            "id": str(uuid.uuid4()), "username": username, "first_name": username, "last_name": None,
            "role": "owner", "inserted_at": now, "updated_at": now,
        }
        self._lock = threading.Lock()
        self._workspaces: Dict[str, Dict[str, Any]] = {}
        for name in workspaces:
            self.add_workspace(name)
        self._datasets: Dict[str, _Dataset] = {}
        self._faults: List[_Fault] = []
        self._requests: List[Tuple[str, str, int]] = []
        self._routes: List[Tuple[str, "re.Pattern[str]", Callable[..., Tuple[int, Any]]]] = [
            ("GET", re.compile(r"/api/v1/me"), self._me),
            ("GET", re.compile(r"/api/v1/me/workspaces"), self._list_workspaces),
            ("GET", re.compile(r"/api/v1/workspaces"), self._list_workspaces),
            ("POST", re.compile(r"/api/v1/workspaces"), self._create_workspace),
            ("GET", re.compile(r"/api/v1/workspaces/(?P<id>[^/]+)"), self._get_workspace),
            ("GET", re.compile(r"/api/v1/me/datasets"), self._list_datasets),
            ("POST", re.compile(r"/api/v1/datasets"), self._create_dataset),
            ("GET", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)"), self._get_dataset),
            ("PATCH", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)"), self._update_dataset),
            ("DELETE", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)"), self._delete_dataset),
            ("PUT", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/publish"), self._publish),
            ("GET", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/fields"), self._list_fields),
            ("POST", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/fields"), self._create_field),
            ("GET", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/questions"), self._list_questions),
            ("POST", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/questions"), self._create_question),
            ("GET", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/vectors-settings"), self._list_vectors),
            ("GET", re.compile(r"/api/v1/me/datasets/(?P<id>[^/]+)/metadata-properties"), self._list_metadata),
            ("POST", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/metadata-properties"), self._create_metadata),
            ("GET", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/records"), self._list_records),
            ("PUT", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/records/bulk"), self._upsert_records),
            ("POST", re.compile(r"/api/v1/datasets/(?P<id>[^/]+)/records/bulk"), self._create_records),
        ]

    # -- serving ---------------------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    @property
    def api_url(self) -> str:
        """The ``api_url`` to give the SDK or a step; after ``start`` with ``port=0``, it names the port chosen."""
        return f"http://{self.host}:{self.port}"

    # -- what tests set and read -----------------------------------------------------------------------------

    def add_workspace(self, name: str) -> str:
        """Creates workspace ``name`` (if new) and returns its id."""
        with self._lock:
            for workspace in self._workspaces.values():
                if workspace["name"] == name:
                    return workspace["id"]
            now = _now()
            workspace = {"id": str(uuid.uuid4()), "name": name, "inserted_at": now, "updated_at": now}
            self._workspaces[workspace["id"]] = workspace
            return workspace["id"]

    def fail_next(
        self,
        status: Optional[int],
        times: int = 1,
        *,
        path: str = "",
        method: Optional[str] = None,
        retry_after: Optional[float] = 0.0,
        delay: float = 0.0,
    ) -> None:
        """The next ``times`` requests whose path contains ``path`` (and whose method is ``method``) wait ``delay``
        seconds, then get ``status`` with ``Retry-After: retry_after`` (``None``: no header). With ``status=None``
        they are served normally after the delay: a client that timed out meanwhile sees a timeout although the
        server did the work."""
        with self._lock:
            self._faults.append(_Fault(status, times, path, method.upper() if method else None, retry_after, delay))

    @property
    def requests(self) -> List[Tuple[str, str, int]]:
        """``(method, path, status)`` of every request so far."""
        with self._lock:
            return list(self._requests)

    def _find(self, name: str, workspace: Optional[str]) -> Optional[_Dataset]:
        for dataset in self._datasets.values():
            if dataset.name == name and (
                workspace is None or self._workspaces[dataset.workspace_id]["name"] == workspace
            ):
                return dataset
        return None

    def dataset(self, name: str, workspace: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """Dataset ``name`` (in ``workspace``, if given) with its settings, or ``None``."""
        with self._lock:
            dataset = self._find(name, workspace)
            if dataset is None:
                return None
            return json.loads(json.dumps({
                **dataset.as_json(),
                "workspace": self._workspaces[dataset.workspace_id]["name"],
                "fields": dataset.fields,
                "questions": dataset.questions,
                "metadata_properties": dataset.metadata_properties,
            }))

    def dataset_names(self) -> List[str]:
        with self._lock:
            return [dataset.name for dataset in self._datasets.values()]

    def records(self, dataset_name: str, workspace: Optional[str] = None) -> List[Dict[str, Any]]:
        """The records of a dataset, in the order they were first stored, as
        ``{"external_id", "fields", "metadata", "suggestions": {question name: value}}``."""
        with self._lock:
            dataset = self._find(dataset_name, workspace)
            if dataset is None:
                raise KeyError(f"no dataset {dataset_name!r}")
            names = {question["id"]: question["name"] for question in dataset.questions}
            return [
                {
                    "external_id": record["external_id"],
                    "fields": dict(record["fields"]),
                    "metadata": dict(record["metadata"] or {}),
                    "suggestions": {names[s["question_id"]]: s["value"] for s in record["suggestions"]},
                }
                for record in dataset.records
            ]

    def bulk_sizes(self, dataset_name: str, workspace: Optional[str] = None) -> List[int]:
        """How many records each accepted bulk request of a dataset carried, in order."""
        with self._lock:
            dataset = self._find(dataset_name, workspace)
            return list(dataset.bulk_sizes) if dataset is not None else []

    # -- serving ---------------------------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Optional[_Fault]:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.path in path and fault.method in (None, method):
                    fault.remaining -= 1
                    return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status, payload, headers = await self._answer(request)
        with self._lock:
            self._requests.append((request.method, request.path, status))
        return web.json_response(payload, status=status, headers=headers)

    async def _answer(self, request: web.Request) -> Tuple[int, Any, Dict[str, str]]:
        given = request.headers.get(API_KEY_HEADER)
        echo = f" (api key {given!r})" if self.echo_api_key_in_errors else ""
        # Read before any injected delay: a client that gives up meanwhile must not take its body with it.
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = _NOT_JSON
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                headers = {} if fault.retry_after is None else {"Retry-After": _seconds(fault.retry_after)}
                return fault.status, {"detail": f"injected HTTP {fault.status}{echo}"}, headers
        if given != self.api_key:
            return 401, {"detail": f"Could not validate credentials{echo}"}, {}
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                if body is _NOT_JSON:
                    return 422, {"detail": "the body is not JSON"}, {}
                try:
                    with self._lock:
                        status, payload = handler(request, body, **match.groupdict())
                except _Refused as refused:
                    return refused.status, {"detail": refused.detail}, {}
                return status, payload, {}
        return 404, {"detail": "Not Found"}, {}

    # -- handlers (run on the server's loop, under the lock: tests read the state from their own thread) -----

    def _me(self, request: web.Request, body: Any) -> Tuple[int, Any]:
        return 200, self._user

    def _list_workspaces(self, request: web.Request, body: Any) -> Tuple[int, Any]:
        return 200, _items(self._workspaces.values())

    def _get_workspace(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        if id not in self._workspaces:
            raise _Refused(404, f"Workspace with id `{id}` not found")
        return 200, self._workspaces[id]

    def _create_workspace(self, request: web.Request, body: Any) -> Tuple[int, Any]:
        name = (body or {}).get("name")
        if any(workspace["name"] == name for workspace in self._workspaces.values()):
            raise _Refused(409, f"Workspace with name `{name}` already exists")
        now = _now()
        workspace = {"id": str(uuid.uuid4()), "name": name, "inserted_at": now, "updated_at": now}
        self._workspaces[workspace["id"]] = workspace
        return 201, workspace

    def _dataset_or_404(self, id: str) -> _Dataset:
        if id not in self._datasets:
            raise _Refused(404, f"Dataset with id `{id}` not found")
        return self._datasets[id]

    def _list_datasets(self, request: web.Request, body: Any) -> Tuple[int, Any]:
        found = list(self._datasets.values())
        for key in ("workspace_id", "name", "status"):
            if key in request.query:
                found = [dataset for dataset in found if str(getattr(dataset, key)) == request.query[key]]
        return 200, _items(dataset.as_json() for dataset in found)

    def _create_dataset(self, request: web.Request, body: Any) -> Tuple[int, Any]:
        body = body or {}
        workspace_id, name = body.get("workspace_id"), body.get("name")
        if workspace_id not in self._workspaces:
            raise _Refused(422, f"Workspace with id `{workspace_id}` not found")
        if not name:
            raise _Refused(422, "dataset name is required")
        if any(d.name == name and d.workspace_id == workspace_id for d in self._datasets.values()):
            raise _Refused(409, f"Dataset with name `{name}` already exists for workspace with id `{workspace_id}`")
        now = _now()
        dataset = _Dataset(id=str(uuid.uuid4()), name=name, workspace_id=workspace_id, inserted_at=now, updated_at=now)
        for key in ("guidelines", "allow_extra_metadata", "distribution"):
            if body.get(key) is not None:
                setattr(dataset, key, body[key])
        self._datasets[dataset.id] = dataset
        return 201, dataset.as_json()

    def _get_dataset(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        return 200, self._dataset_or_404(id).as_json()

    def _update_dataset(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        for key in ("name", "guidelines", "allow_extra_metadata", "distribution"):
            if key in (body or {}) and body[key] is not None:
                setattr(dataset, key, body[key])
        dataset.updated_at = _now()
        return 200, dataset.as_json()

    def _delete_dataset(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        del self._datasets[id]
        return 200, dataset.as_json()

    def _publish(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        if dataset.status == "ready":
            raise _Refused(422, "Dataset is already published")
        if not any(f["required"] for f in dataset.fields):
            raise _Refused(422, "Dataset cannot be published without required fields")
        if not any(q["required"] for q in dataset.questions):
            raise _Refused(422, "Dataset cannot be published without required questions")
        dataset.status = "ready"
        dataset.updated_at = _now()
        return 200, dataset.as_json()

    def _new_setting(self, dataset: _Dataset, kind: str, existing: List[Dict[str, Any]], body: Any,
                     keys: Tuple[str, ...]) -> Dict[str, Any]:
        body = body or {}
        name = body.get("name")
        if not name:
            raise _Refused(422, f"{kind} name is required")
        taken = {item["name"] for item in (*dataset.fields, *dataset.questions, *dataset.metadata_properties)}
        if name in taken:
            raise _Refused(409, f"{kind} with name `{name}` already exists for dataset with id `{dataset.id}`")
        if not isinstance(body.get("settings"), dict) or "type" not in body["settings"]:
            raise _Refused(422, f"{kind} settings with a type are required")
        now = _now()
        item = {key: body.get(key) for key in keys}
        item.update(id=str(uuid.uuid4()), name=name, title=body.get("title") or name, settings=body["settings"],
                    dataset_id=dataset.id, inserted_at=now, updated_at=now)
        existing.append(item)
        return item

    def _list_fields(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        return 200, _items(self._dataset_or_404(id).fields)

    def _create_field(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        if dataset.status == "ready":
            raise _Refused(422, "Field cannot be created for a published dataset")
        field_ = self._new_setting(dataset, "Field", dataset.fields, body, ("description",))
        field_["required"] = bool((body or {}).get("required", True))
        return 201, field_

    def _list_questions(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        return 200, _items(self._dataset_or_404(id).questions)

    def _create_question(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        if dataset.status == "ready":
            raise _Refused(422, "Question cannot be created for a published dataset")
        question = self._new_setting(dataset, "Question", dataset.questions, body, ("description",))
        question["required"] = bool((body or {}).get("required", True))
        return 201, question

    def _list_vectors(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        self._dataset_or_404(id)
        return 200, _items([])

    def _list_metadata(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        return 200, _items(self._dataset_or_404(id).metadata_properties)

    def _create_metadata(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        if not re.fullmatch(r"(?=.*[a-z0-9])[a-z0-9_-]+", str((body or {}).get("name"))):
            raise _Refused(422, "metadata property name must match ^(?=.*[a-z0-9])[a-z0-9_-]+$")
        prop = self._new_setting(dataset, "Metadata property", dataset.metadata_properties, body, ())
        prop["visible_for_annotators"] = (body or {}).get("visible_for_annotators", True)
        return 201, prop

    def _list_records(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        offset, limit = int(request.query.get("offset", 0)), int(request.query.get("limit", 50))
        return 200, {"items": dataset.records[offset : offset + limit], "total": len(dataset.records)}

    def _create_records(self, request: web.Request, body: Any, id: str) -> Tuple[int, Any]:
        status, payload = self._upsert_records(request, body, id, create_only=True)
        return 201, {"items": payload["items"]}

    def _upsert_records(self, request: web.Request, body: Any, id: str, create_only: bool = False) -> Tuple[int, Any]:
        dataset = self._dataset_or_404(id)
        if dataset.status != "ready":
            raise _Refused(422, "Records cannot be created for a non published dataset")
        items = (body or {}).get("items")
        if not isinstance(items, list) or not items:
            raise _Refused(422, "items must be a non-empty list")
        by_external_id = {record["external_id"]: record for record in dataset.records}
        for position, item in enumerate(items):  # all or nothing, as Argilla
            try:
                _check_record(dataset, item, known=item.get("external_id") in by_external_id and not create_only)
            except ValueError as error:
                raise _Refused(422, f"Record at position {position} is not valid because {error}") from None
        stored, updated = [], []
        now = _now()
        for item in items:
            external_id = item.get("external_id") or str(uuid.uuid4())
            record = by_external_id.get(external_id)
            if record is None or create_only:
                record = {
                    "id": str(uuid.uuid4()), "status": "pending", "fields": item["fields"],
                    "metadata": item.get("metadata") or {}, "external_id": external_id, "responses": [],
                    "suggestions": [], "vectors": {}, "dataset_id": dataset.id, "inserted_at": now, "updated_at": now,
                }
                dataset.records.append(record)
                by_external_id[external_id] = record
            else:  # as Argilla: an upsert keeps the fields, replaces the metadata and the suggestions it names
                updated.append(record["id"])
                if "metadata" in item:
                    record["metadata"] = item.get("metadata") or {}
                record["updated_at"] = now
            for suggestion in item.get("suggestions") or []:
                question_id = suggestion["question_id"]
                record["suggestions"] = [s for s in record["suggestions"] if s["question_id"] != question_id]
                record["suggestions"].append({
                    "id": str(uuid.uuid4()), "question_id": suggestion["question_id"], "value": suggestion["value"],
                    "type": suggestion.get("type"), "score": suggestion.get("score"), "agent": suggestion.get("agent"),
                    "inserted_at": now, "updated_at": now,
                })
            stored.append(record)
        dataset.bulk_sizes.append(len(items))
        return 200, {"items": stored, "updated_item_ids": updated}


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _check_record(dataset: _Dataset, item: Dict[str, Any], known: bool) -> None:
    """Raises ``ValueError`` for a record Argilla would refuse: fields, metadata and suggestions."""
    fields = item.get("fields") or {}
    configured = {f["name"]: f for f in dataset.fields}
    unknown = sorted(set(fields) - set(configured))
    if unknown:
        raise ValueError(f"found fields values for non configured fields: {unknown}")
    if not known:
        for name, field_ in configured.items():
            if field_["required"] and fields.get(name) is None:
                raise ValueError(f"missing required value for field: {name!r}")
    for name, value in fields.items():
        if configured[name]["settings"]["type"] == "text" and value is not None and not isinstance(value, str):
            raise ValueError(f"text field {name!r} value must be a string")
    properties = {p["name"]: p for p in dataset.metadata_properties}
    for name, value in (item.get("metadata") or {}).items():
        prop = properties.get(name)
        if prop is None:
            if not dataset.allow_extra_metadata:
                raise ValueError(f"metadata property {name!r} is not configured and extra metadata is not allowed")
            continue
        if value is None:
            continue
        kind = prop["settings"]["type"]
        if kind == "terms":
            terms = value if isinstance(value, list) else [value]
            if not all(isinstance(term, str) for term in terms):
                raise ValueError(f"terms metadata property {name!r} takes strings, got {value!r}")
            allowed = prop["settings"].get("values")
            if allowed and any(term not in allowed for term in terms):
                raise ValueError(f"{value!r} is not one of the values of metadata property {name!r}: {allowed}")
        elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"integer metadata property {name!r} takes integers, got {value!r}")
        elif kind == "float" and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        ):
            raise ValueError(f"float metadata property {name!r} takes numbers, got {value!r}")
    questions = {q["id"]: q for q in dataset.questions}
    for suggestion in item.get("suggestions") or []:
        question = questions.get(suggestion.get("question_id"))
        if question is None:
            raise ValueError(f"question with question_id={suggestion.get('question_id')} does not exist")
        settings, value = question["settings"], suggestion.get("value")
        values = [option["value"] for option in settings.get("options") or []]
        kind = settings["type"]
        if kind in ("rating", "label_selection") and value not in values:
            raise ValueError(f"suggestion for question {question['name']!r}: {value!r} is not one of {values}")
        if kind == "multi_label_selection" and (not isinstance(value, list) or any(v not in values for v in value)):
            raise ValueError(f"suggestion for question {question['name']!r}: {value!r} is not a list of {values}")
        if kind == "text" and not isinstance(value, str):
            raise ValueError(f"suggestion for question {question['name']!r} must be text, got {value!r}")
        if kind == "ranking" and (
            not isinstance(value, list) or any(not isinstance(v, dict) or v.get("value") not in values for v in value)
        ):
            raise ValueError(f"suggestion for question {question['name']!r}: {value!r} does not rank {values}")


def main(argv: Optional[List[str]] = None) -> None:
    """Serves until interrupted: ``python -m beam_distil.testing.argilla_server --port 6900``."""
    parser = argparse.ArgumentParser(description="A local in-memory Argilla 2.x API for tests and demos.")
    parser.add_argument("--port", type=int, default=6900)
    parser.add_argument("--api-key", default="argilla.apikey")
    parser.add_argument("--workspace", action="append", default=None, help="a workspace to create (repeatable)")
    args = parser.parse_args(argv)
    server = ArgillaTestServer(api_key=args.api_key, workspaces=args.workspace or ["argilla"], port=args.port)
    with server:
        print(f"Argilla test API at {server.api_url} (key {args.api_key!r}); Ctrl+C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
