"""A local Vertex AI batch prediction service for tests and demos: the ``batchPredictionJobs`` part of Vertex AI's
REST API that ``google-genai``'s ``client.batches`` (``genai.Client(vertexai=True)``) uses to create, get, list and
cancel jobs, with Gemini answering each request of a job's JSONL input.

Usage::

    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials
    from beam_distil.testing.vertex_batch_server import VertexBatchServer

    with VertexBatchServer() as server:
        client = genai.Client(vertexai=True, project="p", location="us-central1", credentials=Credentials("t"),
                              http_options=types.HttpOptions(base_url=server.base_url))
        job = client.batches.create(model="gemini-test", src=types.BatchJobSource(format="jsonl",
                                    gcs_uri=["/tmp/in.jsonl"]), config={"dest": {"format": "jsonl",
                                    "gcs_uri": "/tmp/out"}})
        client.batches.get(name=job.name).state   # JOB_STATE_RUNNING: each get moves a job one state on
        client.batches.get(name=job.name).state   # JOB_STATE_SUCCEEDED; /tmp/out/prediction-model-*/predictions.jsonl

Endpoints, under ``/v1/`` and ``/v1beta1/`` (the SDK uses ``v1beta1``)::

    POST {version}/projects/{project}/locations/{location}/batchPredictionJobs           create
    GET  {version}/projects/{project}/locations/{location}/batchPredictionJobs           list (pageSize, pageToken,
                                                                                         filter display_name="...")
    GET  {version}/projects/{project}/locations/{location}/batchPredictionJobs/{id}      get (one poll)
    POST {version}/projects/{project}/locations/{location}/batchPredictionJobs/{id}:cancel

Every request needs an ``Authorization: Bearer ...`` header (401 otherwise). Errors have Google's shape,
``{"error": {"code", "message", "status"}}``.

Storage: the job's ``gcsSource.uris`` and ``gcsDestination.outputUriPrefix`` are read and written as **local
paths** (what Beam's ``FileSystems`` makes of a local ``offline_batch_location``). A ``gs://`` URI is refused at
creation with a 400 that says so: this service has no Cloud Storage behind it.

A job's life: created ``JOB_STATE_PENDING``; each GET of it is a poll, and every ``polls_per_state`` polls move it
one state on: to ``JOB_STATE_RUNNING`` (its output folder ``<prefix>/prediction-model-<time>/`` is made and
reported as ``outputInfo.gcsOutputDirectory``), then to its final state, when ``predictions.jsonl`` is written and
``completionStats`` are set. What the final state is comes from the next ``JobPlan`` in ``plans`` (default:
``JOB_STATE_SUCCEEDED`` with every request answered). A job whose input cannot be read or parsed fails when it
would start running, as Vertex AI fails a job whose input does not validate. Control from the test: ``hold`` /
``release`` (all jobs, or one), ``expire(name, answered=k)``, ``fail(name, message)``, ``cancel(name, answered=k)``;
a cancel through the API goes to ``JOB_STATE_CANCELLING``, then ``JOB_STATE_CANCELLED`` at the next poll, with
``answered_before_cancel`` lines.

Each output line is ``{"status", "processed_time", "request", "response"}``, the ``request`` echoed as it was
given. An answer is ``"<model>: <last user text>"`` per candidate (``" #<i>"`` appended when
``candidateCount > 1``), with ``finishReason: STOP`` and ``usageMetadata`` counting words as tokens. A request for
which ``fail_requests(request)`` is true gets a line with a non-empty ``status`` and no ``response``; one for which
``safety_blocked(request)`` is true gets candidates with ``finishReason: SAFETY`` and no text; one for which
``prompt_blocked(request)`` is true gets ``promptFeedback.blockReason: SAFETY`` and no candidates.

Inspection: ``jobs()``, ``job(name)``, ``requests_by_custom_id()`` (every request given in any job's input, by the
``custom_id`` its labels carry), ``polls(name)``, ``calls``. ``fail_next(status, ...)`` answers the next matching
calls with an error (429 with ``Retry-After``, 500...) before they touch any job. Thread safe: the server runs on
its own thread and loop; every method takes one lock.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from aiohttp import web

from beam_distil.models.vertexai_batch import custom_id_of_labels
from beam_distil.testing.local_server import LocalHTTPServer

__all__ = ["VertexBatchServer", "JobPlan", "last_user_text"]

RequestPredicate = Callable[[Dict[str, Any]], bool]
"""``predicate(request) -> bool`` on a ``GenerateContentRequest`` JSON as the input line holds it."""

_PATH = re.compile(
    r"^/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/batchPredictionJobs"
    r"(?:/(?P<id>[^/:]+))?(?P<cancel>:cancel)?$"
)
_FILTER = re.compile(r'^\s*display_name\s*(?P<op>=|!=|:)\s*"(?P<value>[^"]*)"\s*$')
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 503: "UNAVAILABLE"}
FINAL_STATES = ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_EXPIRED",
                "JOB_STATE_CANCELLED")


def last_user_text(request: Dict[str, Any]) -> str:
    """The text of the last ``user`` turn of a ``GenerateContentRequest`` JSON (``""`` if none)."""
    for content in reversed(request.get("contents") or []):
        if content.get("role", "user") == "user":
            return "".join(part.get("text", "") for part in content.get("parts") or [])
    return ""


def _texts(request: Dict[str, Any]) -> List[str]:
    contents = list(request.get("contents") or [])
    if request.get("systemInstruction"):
        contents.append(request["systemInstruction"])
    return [part.get("text", "") for content in contents for part in content.get("parts") or []]


def _words(texts: List[str]) -> int:
    return sum(len(text.split()) for text in texts)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class JobPlan:
    """How a job ends when polls bring it there: ``final_state`` (one of ``FINAL_STATES``), with ``answered``
    requests written (the first ones of the input; ``None``: all of them for a job that succeeds, none for one that
    fails, expires or is cancelled) and, for a failed job, ``error``."""

    final_state: str = "JOB_STATE_SUCCEEDED"
    answered: Optional[int] = None
    error: str = "the batch prediction job failed"

    def __post_init__(self) -> None:
        if self.final_state not in FINAL_STATES:
            raise ValueError(f"final_state must be one of {FINAL_STATES}, not {self.final_state!r}")


@dataclass
class _Job:
    resource: Dict[str, Any]
    plan: JobPlan
    lines: List[Dict[str, Any]] = field(default_factory=list)
    input_error: Optional[str] = None
    polls: int = 0
    polls_in_state: int = 0

    @property
    def state(self) -> str:
        return self.resource["state"]


@dataclass
class _Fault:
    status: int
    remaining: int
    path: str
    method: Optional[str]
    retry_after: Optional[float]


class VertexBatchServer(LocalHTTPServer):
    """Vertex AI's ``batchPredictionJobs`` on 127.0.0.1, its state in memory, served from a background thread.

    Args:
        polls_per_state: GETs of a job that move it one state on.
        fail_requests, safety_blocked, prompt_blocked: which requests get an error line, a ``SAFETY`` finish
            without text, or a blocked prompt (see the module docstring); may be changed while it runs.
    """

    thread_name = "vertex-batch-server"
    keeps_chosen_port = True

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        polls_per_state: int = 1,
        fail_requests: Optional[RequestPredicate] = None,
        safety_blocked: Optional[RequestPredicate] = None,
        prompt_blocked: Optional[RequestPredicate] = None,
    ) -> None:
        if polls_per_state < 1:
            raise ValueError("polls_per_state must be at least 1")
        super().__init__(host=host, port=port, shutdown_timeout=1.0)
        self.polls_per_state = polls_per_state
        self.fail_requests = fail_requests
        self.safety_blocked = safety_blocked
        self.prompt_blocked = prompt_blocked
        self.plans: List[JobPlan] = []
        """Taken in order by the next jobs created; a job created when it is empty gets ``JobPlan()``."""
        self.answered_before_cancel = 0
        """Requests a cancelled job has answered (written to its output) when it reaches ``JOB_STATE_CANCELLED``."""
        self._lock = threading.RLock()
        self._jobs: Dict[str, _Job] = {}
        self._held_all = False
        self._held: Set[str] = set()
        self._faults: List[_Fault] = []
        self._calls: List[Tuple[str, str, int]] = []

    # -- serving ---------------------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    @property
    def base_url(self) -> str:
        """The ``HttpOptions(base_url=...)`` to give ``genai.Client`` (or ``VertexAILLM(base_url=...)``); after
        ``start`` with ``port=0``, it names the port chosen."""
        return f"http://{self.host}:{self.port}/"

    # -- control ---------------------------------------------------------------------------------------------

    def hold(self, name: Optional[str] = None) -> None:
        """Polls stop moving job ``name`` on (every job, those created later included, when ``None``); a
        cancelled job still reaches ``JOB_STATE_CANCELLED``."""
        with self._lock:
            if name is None:
                self._held_all = True
            else:
                self._job(name)
                self._held.add(name)

    def release(self, name: Optional[str] = None) -> None:
        """Undoes ``hold`` for ``name`` (for every job when ``None``)."""
        with self._lock:
            if name is None:
                self._held_all = False
                self._held.clear()
            else:
                self._held.discard(name)

    def expire(self, name: str, answered: int = 0) -> None:
        """Job ``name`` ends now ``JOB_STATE_EXPIRED``, with its first ``answered`` requests written."""
        with self._lock:
            self._finish(self._running_job(name), "JOB_STATE_EXPIRED", answered)

    def fail(self, name: str, message: str = "the batch prediction job failed", answered: int = 0) -> None:
        """Job ``name`` ends now ``JOB_STATE_FAILED`` with ``message``, with its first ``answered`` requests written."""
        with self._lock:
            self._finish(self._running_job(name), "JOB_STATE_FAILED", answered, error=message)

    def cancel(self, name: str, answered: int = 0) -> None:
        """Job ``name`` ends now ``JOB_STATE_CANCELLED`` (as if a user cancelled it from the console), with its first
        ``answered`` requests written. A cancel through the API goes by ``JOB_STATE_CANCELLING`` first."""
        with self._lock:
            self._finish(self._running_job(name), "JOB_STATE_CANCELLED", answered)

    def _running_job(self, name: str) -> _Job:
        job = self._job(name)
        if job.state in FINAL_STATES:
            raise ValueError(f"job {name} already ended {job.state}")
        return job

    def fail_next(
        self, status: int, times: int = 1, *, path: str = "", method: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        """The next ``times`` calls whose path contains ``path`` (and whose method is ``method``) get ``status``
        (with ``Retry-After`` when given), before they touch any job: no poll is counted, no job is made."""
        with self._lock:
            self._faults.append(_Fault(status, times, path, method.upper() if method else None, retry_after))

    # -- inspection ------------------------------------------------------------------------------------------

    def jobs(self) -> List[Dict[str, Any]]:
        """Every job's resource as GET returns it, in the order they were created."""
        with self._lock:
            return [json.loads(json.dumps(job.resource)) for job in self._jobs.values()]

    def job(self, name: str) -> Dict[str, Any]:
        """Job ``name``'s resource (its full resource name, as ``create`` returned it)."""
        with self._lock:
            return json.loads(json.dumps(self._job(name).resource))

    def requests_by_custom_id(self) -> Dict[str, List[Dict[str, Any]]]:
        """Every request of every job's input, by the ``custom_id`` its labels carry, in the order of the jobs."""
        found: Dict[str, List[Dict[str, Any]]] = {}
        with self._lock:
            for job in self._jobs.values():
                for line in job.lines:
                    request = line.get("request") or {}
                    custom_id = custom_id_of_labels(request.get("labels"))
                    if custom_id is not None:
                        found.setdefault(custom_id, []).append(json.loads(json.dumps(request)))
        return found

    def polls(self, name: Optional[str] = None) -> int:
        """GETs of job ``name`` so far (of every job when ``None``)."""
        with self._lock:
            if name is not None:
                return self._job(name).polls
            return sum(job.polls for job in self._jobs.values())

    @property
    def calls(self) -> List[Tuple[str, str, int]]:
        """``(method, path, status)`` of every call so far."""
        with self._lock:
            return list(self._calls)

    # -- HTTP ------------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            status, payload, headers = self._dispatch(request.method, request.path, request.query, request.headers, body)
            self._calls.append((request.method, request.path, status))
            text = json.dumps(payload)  # under the lock: the payload may be a job that another call changes
        return web.Response(text=text, status=status, headers=headers, content_type="application/json")

    def _dispatch(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> Tuple[int, Any, Dict[str, str]]:
        if not headers.get("Authorization", "").startswith("Bearer "):
            return self._error(401, "Request is missing required authentication credential.")
        fault = self._take_fault(method, path)
        if fault is not None:
            extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            status, payload, _ = self._error(fault.status, "injected failure")
            return status, payload, extra
        match = _PATH.match(path)
        if match is None:
            return self._error(404, f"no route {method} {path}")
        parent = f"projects/{match['project']}/locations/{match['location']}"
        job_id, cancel = match["id"], bool(match["cancel"])
        try:
            if job_id is None and method == "POST":
                try:
                    created = json.loads(body or b"{}")
                except ValueError as error:
                    raise _Refused(400, f"the body is not JSON: {error}") from error
                return 200, self._create(parent, created), {}
            if job_id is None and method == "GET":
                return 200, self._list(parent, query), {}
            name = f"{parent}/batchPredictionJobs/{job_id}"
            if name not in self._jobs:
                return self._error(404, f"BatchPredictionJob {name} does not exist.")
            if method == "GET" and not cancel:
                return 200, self._poll(self._jobs[name]), {}
            if method == "POST" and cancel:
                return self._cancel(self._jobs[name])
        except _Refused as refused:
            return self._error(refused.status, str(refused))
        return self._error(404, f"no route {method} {path}")

    def _take_fault(self, method: str, path: str) -> Optional[_Fault]:
        for fault in self._faults:
            if fault.path in path and (fault.method is None or fault.method == method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _error(status: int, message: str) -> Tuple[int, Any, Dict[str, str]]:
        return status, {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}, {}

    # -- jobs ------------------------------------------------------------------------------------------------

    def _job(self, name: str) -> _Job:
        if name not in self._jobs:
            raise KeyError(f"no job {name!r}; jobs: {list(self._jobs)}")
        return self._jobs[name]

    def _create(self, parent: str, body: Dict[str, Any]) -> Dict[str, Any]:
        model = body.get("model")
        input_config = body.get("inputConfig") or {}
        output_config = body.get("outputConfig") or {}
        uris = (input_config.get("gcsSource") or {}).get("uris") or []
        prefix = (output_config.get("gcsDestination") or {}).get("outputUriPrefix")
        if not isinstance(model, str) or not model.startswith("publishers/google/models/"):
            raise _Refused(400, f"model must be publishers/google/models/<model>, not {model!r}")
        if input_config.get("instancesFormat") != "jsonl" or not uris:
            raise _Refused(400, "inputConfig needs instancesFormat 'jsonl' and gcsSource.uris")
        if output_config.get("predictionsFormat") != "jsonl" or not prefix:
            raise _Refused(400, "outputConfig needs predictionsFormat 'jsonl' and gcsDestination.outputUriPrefix")
        for uri in [*uris, prefix]:
            if "://" in uri:
                raise _Refused(400, f"{uri!r}: this local Vertex AI batch service reads and writes local paths only")
        number = 7_000_000_000_000_000_000 + len(self._jobs)
        now = _now()
        resource = {
            "name": f"{parent}/batchPredictionJobs/{number}",
            "displayName": body.get("displayName") or f"job-{number}",
            "model": model,
            "inputConfig": input_config,
            "outputConfig": output_config,
            "state": "JOB_STATE_PENDING",
            "createTime": now,
            "updateTime": now,
        }
        if body.get("labels"):
            resource["labels"] = body["labels"]
        job = _Job(resource=resource, plan=self.plans.pop(0) if self.plans else JobPlan())
        # The input is read now (a test sees its requests at once); a problem with it fails the job when it would
        # start running, as Vertex AI's validation does.
        try:
            for uri in uris:
                for number_in_file, raw in enumerate(Path(uri).read_bytes().splitlines(), start=1):
                    if not raw.strip():
                        continue
                    line = json.loads(raw)
                    if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
                        raise ValueError(f"{uri} line {number_in_file} has no 'request' object")
                    job.lines.append(line)
        except (OSError, ValueError) as error:
            job.input_error = f"the input could not be read: {error}"
        self._jobs[resource["name"]] = job
        return resource

    def _list(self, parent: str, query: Any) -> Dict[str, Any]:
        jobs = [job.resource for name, job in self._jobs.items() if name.startswith(f"{parent}/")]
        wanted = query.get("filter")
        if wanted:
            match = _FILTER.match(wanted)
            if match is None:
                raise _Refused(400, f"unsupported filter {wanted!r}: this service filters on display_name only")
            value, op = match["value"], match["op"]
            keep = {"=": lambda name: name == value, "!=": lambda name: name != value, ":": lambda name: value in name}[op]
            jobs = [job for job in jobs if keep(job["displayName"])]
        jobs = list(reversed(jobs))  # newest first
        size = int(query.get("pageSize") or 100)
        start = int(query.get("pageToken") or 0)
        page: Dict[str, Any] = {"batchPredictionJobs": json.loads(json.dumps(jobs[start : start + size]))}
        if start + size < len(jobs):
            page["nextPageToken"] = str(start + size)
        return page

    def _poll(self, job: _Job) -> Dict[str, Any]:
        job.polls += 1
        held = self._held_all or job.resource["name"] in self._held
        if job.state not in FINAL_STATES and (job.state == "JOB_STATE_CANCELLING" or not held):
            job.polls_in_state += 1
            if job.polls_in_state >= self.polls_per_state:
                self._advance(job)
        return job.resource

    def _advance(self, job: _Job) -> None:
        if job.state == "JOB_STATE_CANCELLING":
            self._finish(job, "JOB_STATE_CANCELLED", self.answered_before_cancel)
        elif job.state == "JOB_STATE_PENDING":
            if job.input_error is not None:
                self._finish(job, "JOB_STATE_FAILED", 0, error=job.input_error)
            else:
                self._start_running(job)
        elif job.state == "JOB_STATE_RUNNING":
            plan = job.plan
            answered = plan.answered
            if answered is None:
                ends_well = plan.final_state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED")
                answered = len(job.lines) if ends_well else 0
            self._finish(job, plan.final_state, answered, error=plan.error)

    def _start_running(self, job: _Job) -> None:
        prefix = job.resource["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
        now = _now()
        directory = f"{prefix}/prediction-model-{now}"
        Path(directory).mkdir(parents=True, exist_ok=True)
        job.resource.update(state="JOB_STATE_RUNNING", startTime=now, updateTime=now)
        job.resource["outputInfo"] = {"gcsOutputDirectory": directory}
        job.polls_in_state = 0

    def _finish(self, job: _Job, state: str, answered: int, error: Optional[str] = None) -> None:
        if answered and "outputInfo" not in job.resource:
            self._start_running(job)
        lines = [self._output_line(job, line["request"]) for line in job.lines[:answered]]
        if lines:
            path = Path(job.resource["outputInfo"]["gcsOutputDirectory"]) / "predictions.jsonl"
            path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        failed = sum(1 for line in lines if line["status"])
        now = _now()
        job.resource.update(state=state, endTime=now, updateTime=now)
        job.resource["completionStats"] = {
            "successfulCount": str(len(lines) - failed),
            "failedCount": str(failed),
            "incompleteCount": str(len(job.lines) - len(lines)),
        }
        if state == "JOB_STATE_FAILED":
            job.resource["error"] = {"code": 3, "message": error or "the batch prediction job failed"}
        elif state == "JOB_STATE_CANCELLED":
            job.resource["error"] = {"code": 1, "message": "CANCELED"}
        job.polls_in_state = 0

    def _cancel(self, job: _Job) -> Tuple[int, Any, Dict[str, str]]:
        if job.state in FINAL_STATES:
            return 400, {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                                   "message": f"job {job.resource['name']} already ended {job.state}"}}, {}
        job.resource.update(state="JOB_STATE_CANCELLING", updateTime=_now())
        job.polls_in_state = 0
        return 200, {}, {}

    # -- answers ---------------------------------------------------------------------------------------------

    def _output_line(self, job: _Job, request: Dict[str, Any]) -> Dict[str, Any]:
        line: Dict[str, Any] = {"status": "", "processed_time": _now(), "request": request}
        if self.fail_requests is not None and self.fail_requests(request):
            error = {"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT"}}
            line["status"] = f"Bad Request: {json.dumps(error)}"
            return line
        line["response"] = self._response(job.resource["model"].rsplit("/", 1)[-1], request)
        return line

    def _response(self, model: str, request: Dict[str, Any]) -> Dict[str, Any]:
        prompt_tokens = _words(_texts(request))
        if self.prompt_blocked is not None and self.prompt_blocked(request):
            return {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model,
                    "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}}
        count = int((request.get("generationConfig") or {}).get("candidateCount") or 1)
        text = last_user_text(request)
        candidates = []
        if self.safety_blocked is not None and self.safety_blocked(request):
            candidates = [
                {"index": index, "finishReason": "SAFETY",
                 "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}
                for index in range(count)
            ]
            answers: List[str] = []
        else:
            answers = [f"{model}: {text}" + (f" #{index}" if count > 1 else "") for index in range(count)]
            candidates = [
                {"index": index, "content": {"role": "model", "parts": [{"text": answer}]}, "finishReason": "STOP"}
                for index, answer in enumerate(answers)
            ]
        output_tokens = _words(answers)
        return {
            "candidates": candidates,
            "modelVersion": model,
            "usageMetadata": {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
                              "totalTokenCount": prompt_tokens + output_tokens},
        }


class _Refused(Exception):
    """Ends a call with ``status`` and this message, in Google's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
