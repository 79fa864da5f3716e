"""``ArgillaConnection``: one step's session with an Argilla server, through the official ``argilla`` SDK (2.x).

It is made in the step's ``load()`` on the worker (never pickled) and does three things:

* connects (the SDK asks ``GET /api/v1/me``), and finds the workspace;
* finds the dataset, or creates it with the step's layout (``POST /api/v1/datasets``, its fields, questions and
  metadata properties, ``PUT .../publish``); an existing dataset is reused when it can take the step's records;
* pushes records with ``PUT /api/v1/datasets/{id}/records/bulk`` (an upsert keyed by each record's external id,
  at most 500 records a request, the SDK's limit).

Every request is retried on 408/429/5xx, timeouts and dropped connections, with exponential backoff and full
jitter (``Retry-After`` when the server sends one): the SDK itself retries only failed connection attempts.
What the server refuses for good is sorted in two:

* the configuration (401 key, 403 role, a missing workspace, a dataset whose settings do not fit, a dataset
  deleted mid-run): ``ArgillaConfigurationError``, which fails the job with what to change;
* a batch of records (422, or retries exhausted): ``push`` reports it and the run goes on; a 4xx batch is split
  in halves first, so that only the records the server refuses are left out.

Messages never hold the API key: they pass through the step's ``redact``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from beam_distil.models.retries import backoff_seconds
from beam_distil.steps.argilla.records import ArgillaRecord
from beam_distil.steps.argilla.settings import DatasetLayout

logger = logging.getLogger("beam_distil")

INSTALL_HINT = "pip install 'beam-distil[argilla]'"
"""How to get the SDK the Argilla steps need."""

MAX_RECORDS_PER_REQUEST = 500
"""The most records the SDK sends in one bulk request (``RecordsAPI.MAX_RECORDS_PER_UPSERT_BULK``)."""

_T = TypeVar("_T")


def argilla_installed() -> bool:
    """Whether the ``argilla`` SDK can be imported (checked without importing it: the import takes seconds)."""
    return importlib.util.find_spec("argilla") is not None


def import_argilla() -> Any:
    """The ``argilla`` module, or an ``ImportError`` saying how to install it."""
    try:
        return importlib.import_module("argilla")
    except ImportError as error:
        raise ImportError(f"the Argilla steps need the argilla SDK: {INSTALL_HINT}") from error


class ArgillaConfigurationError(ValueError):
    """The Argilla server refused the step's configuration (key, role, workspace, dataset); fix it and run again."""


class ArgillaRequestError(RuntimeError):
    """A request that failed for good: refused (``status``) or still failing after every retry."""

    def __init__(self, message: str, status: Optional[int]) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a step tries: attempts per request, backoff base, per-request timeout, and how long it waits for
    a dataset another worker is still creating."""

    max_attempts: int = 6
    base_seconds: float = 1.0
    timeout_seconds: float = 60.0
    draft_wait_seconds: float = 60.0


class _RetryAfter:
    """An httpx response hook keeping the ``Retry-After`` (in seconds) of the last error answer: the SDK's
    exceptions keep the status and body of a response, not its headers."""

    def __init__(self) -> None:
        self.seconds: Optional[float] = None

    def __call__(self, response: Any) -> None:
        value = response.headers.get("retry-after") if response.status_code >= 400 else None
        try:
            self.seconds = float(value) if value is not None else None
        except ValueError:  # an HTTP date: the backoff decides
            self.seconds = None


def _chain(error: BaseException) -> List[BaseException]:
    """``error`` and the exceptions it was raised from (the SDK wraps its HTTP errors once or twice)."""
    found: List[BaseException] = []
    current: Optional[BaseException] = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _status(error: BaseException) -> Optional[int]:
    for link in _chain(error):
        status = getattr(link, "status_code", None)
        if isinstance(status, int):
            return status
        response = getattr(link, "response", None)
        if isinstance(getattr(response, "status_code", None), int):
            return response.status_code
    return None


def _is_transient(error: BaseException) -> bool:
    import httpx

    status = _status(error)
    if status is not None:
        return status in (408, 429) or status >= 500
    return any(
        isinstance(link, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))
        for link in _chain(error)
    )


def _from_the_server(error: BaseException) -> bool:
    """Whether ``error`` comes from talking to the server (the SDK's errors, httpx's), not from a bug here."""
    import httpx

    return any(
        isinstance(link, httpx.HTTPError) or type(link).__module__.split(".")[0] == "argilla" for link in _chain(error)
    )


def _is_refused_key(error: BaseException) -> bool:
    return _status(error) == 401 or any(type(link).__name__ == "ArgillaCredentialsError" for link in _chain(error))


class ArgillaConnection:
    """A connected SDK client for one step, its workspace and dataset, and the retries around every request."""

    def __init__(
        self,
        *,
        step_name: str,
        api_url: str,
        api_key: str,
        headers: Dict[str, str],
        policy: RetryPolicy,
        redact: Callable[[str], str],
        fix_key_hint: str,
    ) -> None:
        self._rg = import_argilla()
        self._step_name = step_name
        self.api_url = api_url
        self._policy = policy
        self._redact = redact
        self._fix_key_hint = fix_key_hint
        self._retry_after = _RetryAfter()
        self._rng = random.Random()
        self._dataset: Any = None
        self._client = self._connect(api_key, headers)

    def _connect(self, api_key: str, headers: Dict[str, str]) -> Any:
        try:
            return self._call("connecting", lambda: self._new_client(api_key, headers))
        except ArgillaRequestError as error:
            if error.status == 404:
                raise ArgillaConfigurationError(
                    f"Step {self._step_name!r}: {self.api_url} has no Argilla 2.x API (GET /api/v1/me answered 404):"
                    " set api_url (or ARGILLA_API_URL) to the address of your Argilla server."
                ) from None
            raise

    def _new_client(self, api_key: str, headers: Dict[str, str]) -> Any:
        return self._rg.Argilla(
            api_url=self.api_url,
            api_key=api_key,
            timeout=self._policy.timeout_seconds,
            retries=0,  # connection attempts are retried here, with backoff
            headers=dict(headers),
            event_hooks={"response": [self._retry_after]},
        )

    # -- requests ------------------------------------------------------------------------------------------

    def _describe(self, error: BaseException) -> str:
        # Redacted before it is shortened: a cut key would no longer match.
        text = self._redact(f"{type(error).__name__}: {error}")
        return text if len(text) <= 600 else text[:600] + "..."

    def _call(self, what: str, action: Callable[[], _T]) -> _T:
        """``action()``, retried while it fails transiently; refusals become the errors the module describes."""
        for attempt in range(self._policy.max_attempts):
            self._retry_after.seconds = None
            try:
                return action()
            except Exception as error:  # noqa: BLE001 — sorted below; nothing is swallowed
                if not _from_the_server(error):
                    raise
                if _is_refused_key(error):
                    raise ArgillaConfigurationError(
                        f"Step {self._step_name!r}: the Argilla server at {self.api_url} refused the API key (HTTP 401)"
                        f" while {what}: {self._fix_key_hint}."
                    ) from None
                status = _status(error)
                if status == 403:
                    raise ArgillaConfigurationError(
                        f"Step {self._step_name!r}: the Argilla server at {self.api_url} does not let this key's user"
                        f" do this (HTTP 403) while {what}: use the key of an owner or admin of the workspace, or"
                        f" give this user that role. Server said: {self._describe(error)}"
                    ) from None
                if not _is_transient(error):
                    answer = f"refused a request (HTTP {status})" if status is not None else "could not be used"
                    raise ArgillaRequestError(
                        f"Step {self._step_name!r}: the Argilla server at {self.api_url} {answer} while {what}:"
                        f" {self._describe(error)}",
                        status,
                    ) from None
                if attempt + 1 == self._policy.max_attempts:
                    raise ArgillaRequestError(
                        f"Step {self._step_name!r}: the Argilla server at {self.api_url} kept failing while {what}"
                        f" ({self._policy.max_attempts} attempts; last: {self._describe(error)}). Check that it is up"
                        f" and reachable at that address (api_url / ARGILLA_API_URL).",
                        status,
                    ) from None
                delay = backoff_seconds(attempt, self._policy.base_seconds, self._retry_after.seconds, self._rng)
                logger.warning(
                    "Step %r: Argilla request failed while %s (%s); retrying in %.1f s (attempt %d of %d).",
                    self._step_name, what, self._describe(error), delay, attempt + 2, self._policy.max_attempts,
                )
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    # -- workspace and dataset -----------------------------------------------------------------------------

    def _workspace(self, name: Optional[str]) -> Any:
        workspaces = self._call("listing workspaces", lambda: self._client.api.workspaces.list())
        names = [workspace.name for workspace in workspaces]
        if name is None:
            if not workspaces:
                raise ArgillaConfigurationError(
                    f"Step {self._step_name!r}: the Argilla server at {self.api_url} has no workspace this key's user"
                    " belongs to: create one in Argilla (or add the user to one) and pass its name as"
                    " dataset_workspace."
                )
            return self._rg.Workspace.from_model(workspaces[0], client=self._client)
        for workspace in workspaces:
            if workspace.name == name:
                return self._rg.Workspace.from_model(workspace, client=self._client)
        raise ArgillaConfigurationError(
            f"Step {self._step_name!r}: the Argilla server at {self.api_url} has no workspace {name!r} that this key's"
            f" user belongs to (its workspaces: {names}): set dataset_workspace to one of them, or create {name!r}"
            " in Argilla and add the user to it."
        )

    def _find_dataset(self, name: str, workspace_id: Any) -> Any:
        for model in self._client.api.datasets.list(workspace_id=workspace_id):
            if model.name == name:
                return model
        return None

    def _settings(self, layout: DatasetLayout) -> Any:
        rg, client = self._rg, self._client
        fields = [rg.TextField(name=f.name, title=f.name, required=f.required, client=client) for f in layout.fields]
        questions = []
        for q in layout.questions:
            common = dict(name=q.name, title=q.title, description=q.description, required=q.required, client=client)
            if q.kind == "label_selection":
                questions.append(rg.LabelQuestion(labels={value: text for value, text in q.options}, **common))
            elif q.kind == "rating":
                questions.append(rg.RatingQuestion(values=q.option_values, **common))
            else:
                questions.append(rg.TextQuestion(**common))
        kinds = {
            "terms": rg.TermsMetadataProperty, "integer": rg.IntegerMetadataProperty, "float": rg.FloatMetadataProperty
        }
        metadata = [kinds[m.kind](name=m.name, title=m.name, client=client) for m in layout.metadata]
        return rg.Settings(fields=fields, questions=questions, metadata=metadata, allow_extra_metadata=False)

    def _create_dataset(self, name: str, workspace: Any, layout: DatasetLayout) -> Any:
        dataset = self._rg.Dataset(name=name, workspace=workspace, settings=self._settings(layout), client=self._client)
        return dataset.create()

    def use_dataset(self, name: str, workspace_name: Optional[str], layout: DatasetLayout) -> str:
        """Finds dataset ``name`` (reused when it fits ``layout``) or creates it; ``"reused"`` or ``"created"``.

        Several workers load at once: one creates the dataset, the others get 409 and wait until it is published.
        """
        workspace = self._workspace(workspace_name)
        where = f"dataset {name!r} in workspace {workspace.name!r} on {self.api_url}"
        deadline = time.monotonic() + self._policy.draft_wait_seconds
        while True:
            model = self._call(f"looking for {where}", lambda: self._find_dataset(name, workspace.id))
            if model is None:
                try:
                    self._dataset = self._call(
                        f"creating {where}", lambda: self._create_dataset(name, workspace, layout)
                    )
                    return "created"
                except ArgillaRequestError as error:
                    if error.status != 409 or time.monotonic() > deadline:
                        raise
                    continue  # another worker created it meanwhile: look again
            if model.status == "ready":
                dataset = self._call(
                    f"reading the settings of {where}",
                    lambda found=model: self._rg.Dataset.from_model(model=found, client=self._client).get(),
                )
                problems = layout.differences(dataset.settings.serialize())
                if problems:
                    raise ArgillaConfigurationError(
                        f"Step {self._step_name!r}: {where} already exists, and its settings cannot take this step's"
                        f" records: {'; '.join(problems)}. Choose another dataset_name, or delete that dataset in"
                        " Argilla so that the step creates it."
                    )
                self._dataset = dataset
                return "reused"
            if time.monotonic() > deadline:
                raise ArgillaConfigurationError(
                    f"Step {self._step_name!r}: {where} exists but was never published (status {model.status!r}):"
                    " an earlier creation stopped half-way. Delete it in Argilla, or choose another dataset_name."
                )
            time.sleep(1.0)

    # -- records -------------------------------------------------------------------------------------------

    def _record_model(self, record: ArgillaRecord) -> Any:
        rg = self._rg
        sdk_record = rg.Record(
            id=record.external_id,
            fields=dict(record.fields),
            metadata=dict(record.metadata) or None,
            suggestions=[rg.Suggestion(question_name=name, value=value) for name, value in record.suggestions.items()],
        )
        sdk_record.dataset = self._dataset  # suggestions name their question by the id this dataset gave it
        return sdk_record.api_model()

    def push(self, records: Sequence[ArgillaRecord]) -> Tuple[int, List[str]]:
        """Upserts ``records``; returns how many the server took and why the others were left out."""
        if self._dataset is None:
            raise RuntimeError("use_dataset() must come before push()")
        pushed, failures = 0, []
        for start in range(0, len(records), MAX_RECORDS_PER_REQUEST):
            done, failed = self._push_chunk(list(records[start : start + MAX_RECORDS_PER_REQUEST]))
            pushed += done
            failures.extend(failed)
        return pushed, failures

    def _push_chunk(self, records: List[ArgillaRecord]) -> Tuple[int, List[str]]:
        models = [self._record_model(record) for record in records]
        dataset_id = self._dataset.id
        try:
            self._call(
                f"pushing {len(models)} records to dataset {self._dataset.name!r}",
                lambda: self._client.api.records.bulk_upsert(dataset_id=dataset_id, records=models),
            )
        except ArgillaRequestError as error:
            if error.status == 404:
                raise ArgillaConfigurationError(
                    f"Step {self._step_name!r}: dataset {self._dataset.name!r} is gone from {self.api_url} (HTTP 404):"
                    " it was deleted during the run. Run again to create it anew."
                ) from None
            if error.status is not None and 400 <= error.status < 500 and len(records) > 1:
                half = len(records) // 2
                first, second = self._push_chunk(records[:half]), self._push_chunk(records[half:])
                return first[0] + second[0], first[1] + second[1]
            return 0, [f"{len(records)} record(s) not pushed: {error}"]
        return len(models), []

    def close(self) -> None:
        self._client.http_client.close()
