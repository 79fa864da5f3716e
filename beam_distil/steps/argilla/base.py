"""``ArgillaBase``: a step that pushes its rows to an Argilla dataset as records, and passes them on unchanged.

As distilabel's ``ArgillaBase``: ``dataset_name``, ``dataset_workspace``, ``api_url`` (else ``ARGILLA_API_URL``)
and ``api_key`` (else ``ARGILLA_API_KEY``), and the dataset is created when the step loads. Subclasses say what
the dataset holds (``argilla_fields``, ``argilla_questions``) and which records a row gives (``records_for``)::

    with Pipeline("review") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Name a colour."}])
        generate = TextGeneration(llm=OpenAILLM(model="gpt-4o-mini"))
        review = TextGenerationToArgilla(dataset_name="colours", dataset_workspace="team")
        load >> generate >> review          # rows go on after `review`, as they came in

What beam_distil adds:

* The key is a ``SecretStr``: never in a repr, a saved pipeline or an error message. Without ``api_key`` it is
  read from ``ARGILLA_API_KEY`` on the worker when the step loads (so it is not in the job graph); either may be
  a ``gcp-secret://`` Secret Manager reference (``beam_distil.secrets``). ``api_url`` likewise falls back to
  ``ARGILLA_API_URL`` on the worker (distilabel reads both when the step is made).
* The SDK is an extra (``pip install 'beam-distil[argilla]'``): a step can be made, validated and saved without
  it; ``check_ready()`` and ``load()`` say how to install it.
* Requests are retried (408/429/5xx, timeouts); the job fails only when the server refuses the configuration
  (a wrong key, a missing workspace, an existing dataset whose settings cannot take the records) or cannot be
  reached at all when the step loads, with what to change. Records the server refuses, or that could not be sent after every retry, are logged with the reason
  and counted (``argilla_records_failed``); their rows still go on, so the Distiset keeps them.
* ``metadata_properties={"column": "terms" | "integer" | "float"}`` adds those columns to each record's
  metadata (an extension: distilabel's steps have no metadata).
* A row that gives no record (no instruction, no generation) is counted in ``argilla_rows_without_record``, a
  metadata value that does not fit its kind (text for an integer) in ``argilla_metadata_values_dropped``.

Records are pushed once per batch of ``input_batch_size`` rows; a retried request sends the same external ids,
so Argilla updates what it already stored rather than adding it twice. A bundle that Beam itself runs again
(after a failure later in the same stage) pushes its records again: the push is at-least-once.
"""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from apache_beam.metrics import Metrics
from pydantic import Field, PrivateAttr, SecretStr

from beam_distil.helpers import http_url_problem
from beam_distil.runtime_parameters import RuntimeParameter
from beam_distil.steps.argilla.client import (
    INSTALL_HINT,
    ArgillaConnection,
    RetryPolicy,
    argilla_installed,
)
from beam_distil.steps.argilla.records import ArgillaRecord, metadata_value
from beam_distil.steps.argilla.settings import DatasetLayout, MetadataKind, MetadataSpec, QuestionSpec, TextFieldSpec
from beam_distil.steps.base import Step, StepColumns, StepInput, StepOutput

logger = logging.getLogger("beam_distil")

API_URL_ENV_VAR = "ARGILLA_API_URL"
API_KEY_ENV_VAR = "ARGILLA_API_KEY"
METADATA_NAME = re.compile(r"(?=.*[a-z0-9])[a-z0-9_-]+")
"""What Argilla's server accepts as a metadata property name."""


class ArgillaBase(Step, ABC):
    """Pushes each batch of rows to an Argilla dataset and yields the rows unchanged (see the module docstring).

    Attributes:
        dataset_name: the dataset the records go to; created with the step's layout when it does not exist.
        dataset_workspace: its workspace; ``None``: the first workspace of the key's user.
        api_url: the Argilla server, e.g. ``"http://localhost:6900"``; ``None``: ``ARGILLA_API_URL``.
        api_key: the key of an owner or admin; ``None``: ``ARGILLA_API_KEY`` on the worker.
        metadata_properties: ``column -> "terms" | "integer" | "float"``: columns stored as record metadata.

    Runtime parameters: ``dataset_name``, ``dataset_workspace``, ``api_url``, ``api_key``.

    Output columns: none; the rows go on as they came in.
    """

    dataset_name: RuntimeParameter[str] = Field(default=None, description="The name of the dataset in Argilla.")
    dataset_workspace: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description="The workspace of the dataset; when not given, the first workspace of the key's user.",
    )
    api_url: Optional[RuntimeParameter[str]] = Field(
        default=None, description=f"The Argilla server's URL; when not given, {API_URL_ENV_VAR} on the worker."
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = Field(
        default=None, description=f"The Argilla API key; when not given, {API_KEY_ENV_VAR} on the worker."
    )
    metadata_properties: Dict[str, MetadataKind] = Field(
        default_factory=dict,
        description="Row columns stored as record metadata, each with its Argilla kind: terms, integer or float.",
    )

    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()
    """Attempts, backoff, timeout; a class attribute, so that a run's steps all behave alike."""

    _connection: Optional[ArgillaConnection] = PrivateAttr(default=None)
    _resolved_key: Optional[str] = PrivateAttr(default=None)
    _warned_metadata: bool = PrivateAttr(default=False)

    # -- what subclasses say ---------------------------------------------------------------------------------

    @abstractmethod
    def argilla_fields(self) -> Tuple[TextFieldSpec, ...]:
        """The dataset's fields, named after the dataset columns they show (``input_mappings`` applied)."""

    @abstractmethod
    def argilla_questions(self) -> Tuple[QuestionSpec, ...]:
        """The dataset's questions."""

    @abstractmethod
    def records_for(self, row: Dict[str, Any]) -> List[ArgillaRecord]:
        """The records of one row (its columns under the step's input names); none when it has nothing to show."""

    @property
    def outputs(self) -> StepColumns:
        return []

    def _metadata_inputs(self) -> Dict[str, bool]:
        return {column: True for column in self.metadata_properties}

    def dataset_layout(self) -> DatasetLayout:
        """What the dataset holds: the subclass's fields and questions, and ``metadata_properties``."""
        return DatasetLayout(
            fields=self.argilla_fields(),
            questions=self.argilla_questions(),
            metadata=tuple(MetadataSpec(name, kind) for name, kind in self.metadata_properties.items()),
        )

    def _metadata_of(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """The row's ``metadata_properties`` values; one that does not fit its kind is left out and counted."""
        metadata = {}
        for name, kind in self.metadata_properties.items():
            value = metadata_value(row.get(name), kind)
            if value is not None:
                metadata[name] = value
            elif row.get(name) is not None:
                Metrics.counter(self.name, "argilla_metadata_values_dropped").inc()
                if not self._warned_metadata:
                    self._warned_metadata = True
                    logger.warning(
                        "Step %r: metadata property %r is %s, and the value %.80r is not one; it is left out of the"
                        " record (counted in argilla_metadata_values_dropped; further values are not reported).",
                        self.name, name, kind, row.get(name),
                    )
        return metadata

    def _column(self, name: str) -> str:
        """The dataset column (and Argilla field name) an input reads, after ``input_mappings``."""
        return self.input_mappings.get(name, name)

    # -- settings and secrets --------------------------------------------------------------------------------

    def _api_url_setting(self) -> Optional[str]:
        return self.api_url or os.getenv(API_URL_ENV_VAR) or None

    def _api_key_setting(self) -> Optional[str]:
        """The key as configured: the argument, else the environment; possibly a ``gcp-secret://`` reference."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.getenv(API_KEY_ENV_VAR) or None

    def _hugging_face_token(self) -> Optional[str]:
        """distilabel sends ``HF_TOKEN`` to Argilla servers on Hugging Face Spaces (private Spaces need it)."""
        url = self._api_url_setting() or ""
        return os.getenv("HF_TOKEN") if "hf.space" in url else None

    def _fix_key_hint(self) -> str:
        return (
            f"pass the key of an Argilla owner or admin (shown in the user's settings page in Argilla) as"
            f" api_key= on step {self.name!r}, or set the {API_KEY_ENV_VAR} environment variable"
        )

    def check_ready(self) -> List[str]:
        """What stops the step from pushing, found without a request (for pipeline validation and ``load``)."""
        problems = []
        if not argilla_installed():
            problems.append(f"{type(self).__name__} needs the argilla SDK, which is not installed: {INSTALL_HINT}")
        url = self._api_url_setting()
        if not url:
            problems.append(f"no Argilla server: pass api_url= or set the {API_URL_ENV_VAR} environment variable")
        elif http_url_problem(url, f"api_url {url!r}", "http://localhost:6900"):
            problems.append(http_url_problem(url, f"api_url {url!r}", "http://localhost:6900"))
        if not self._api_key_setting():
            problems.append(f"no Argilla API key: {self._fix_key_hint()}")
        misnamed = [name for name in self.metadata_properties if not METADATA_NAME.fullmatch(name)]
        if misnamed:
            problems.append(
                f"metadata_properties {misnamed}: Argilla names metadata properties with lowercase letters, digits,"
                " '_' and '-' only: rename those columns (e.g. with a step before this one)"
            )
        layout = self.dataset_layout()
        taken = {spec.name for spec in (*layout.fields, *layout.questions)}
        clashing = sorted(taken & set(self.metadata_properties))
        if clashing:
            problems.append(
                f"metadata_properties {clashing} share their names with the dataset's fields or questions;"
                " Argilla needs distinct names: rename those columns (e.g. with a step before this one)"
            )
        return problems

    def redact(self, text: str) -> str:
        """``text`` without this step's secrets (the key, the Hugging Face token)."""
        for secret in (self._api_key_setting(), self._resolved_key, self._hugging_face_token()):
            # A placeholder such as "x" for a local server is no secret, and replacing it would garble the text.
            if secret and len(secret) >= 8:
                text = text.replace(secret, "**********")
        return text

    # -- lifecycle -------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Connects to Argilla and finds or creates the dataset (on the worker; the client is never pickled)."""
        super().load()
        if not argilla_installed():
            raise ImportError(f"Step {self.name!r} ({type(self).__name__}) needs the argilla SDK: {INSTALL_HINT}")
        problems = [] if self.dataset_name else [
            "no dataset_name: set it in the constructor or with"
            f" run(parameters={{{self.name!r}: {{'dataset_name': ...}}}})"
        ]
        problems += self.check_ready()
        if problems:
            raise ValueError(f"Step {self.name!r} cannot push to Argilla: {'; '.join(problems)}.")
        from beam_distil.secrets import resolve_secret

        self._resolved_key = resolve_secret(self._api_key_setting() or "")
        token = self._hugging_face_token()
        connection = ArgillaConnection(
            step_name=self.name or type(self).__name__,
            api_url=self._api_url_setting() or "",
            api_key=self._resolved_key,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            policy=self.retry_policy,
            redact=self.redact,
            fix_key_hint=self._fix_key_hint(),
        )
        try:
            outcome = connection.use_dataset(self.dataset_name, self.dataset_workspace, self.dataset_layout())
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        logger.info("Step %r: %s Argilla dataset %r at %s.", self.name, outcome, self.dataset_name, connection.api_url)

    def unload(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        super().unload()

    def __getstate__(self) -> Dict[str, Any]:
        # The connection (an HTTP client) and the key read on this machine stay here; a worker makes its own.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private.update(_connection=None, _resolved_key=None, _loaded=False)
        state["__pydantic_private__"] = private
        return state

    # -- rows ------------------------------------------------------------------------------------------------

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        """Pushes the records of ``inputs`` in one go (split by 500, the SDK's limit) and yields ``inputs``."""
        if self._connection is None:
            raise RuntimeError(f"Step {self.name!r}: call load() before process(); it connects to Argilla.")
        records: List[ArgillaRecord] = []
        rows_without_record = 0
        for row in inputs:
            made = self.records_for(row)
            if not made:
                rows_without_record += 1
            records.extend(made)
        pushed, failures = self._connection.push(records) if records else (0, [])
        failed = len(records) - pushed
        Metrics.counter(self.name, "argilla_records_pushed").inc(pushed)
        if failed:
            Metrics.counter(self.name, "argilla_records_failed").inc(failed)
            logger.error(
                "Step %r: %d of %d records were not pushed to Argilla dataset %r; their rows go on unchanged. %s",
                self.name, failed, len(records), self.dataset_name, " ".join(failures),
            )
        if rows_without_record:
            Metrics.counter(self.name, "argilla_rows_without_record").inc(rows_without_record)
            logger.warning(
                "Step %r: %d of %d rows gave no Argilla record (no instruction or no generation).",
                self.name, rows_without_record, len(inputs),
            )
        yield inputs
