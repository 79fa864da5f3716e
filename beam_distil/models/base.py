"""LLM base classes, with distilabel's interface: ``generate`` for a list of inputs, ``agenerate`` for one.

Every LLM is a pydantic model holding configuration only; ``load()`` makes the client where the model is used
(on a worker, once it has been unpickled), so a client is never pickled. Async LLMs run on one event loop per
process (``beam_distil.models.event_loop``) shared by every caller and thread of that process::

    llm = OpenAILLM(model="gpt-4o-mini")
    llm.load()
    llm.generate([[{"role": "user", "content": "Hi"}]], num_generations=2)
    # [{"generations": ["Hello!", "Hi there!"], "statistics": {"input_tokens": [8, 8], "output_tokens": [3, 4]}}]
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, ClassVar, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    field_serializer,
    field_validator,
    model_validator,
)
from typing_extensions import NotRequired, TypedDict

from beam_distil.models.event_loop import run_coroutine
from beam_distil.models.in_flight import request_in_flight
from beam_distil.models.limits import AdaptiveConcurrencyLimit, RateLimiter
from beam_distil.models.retries import RetryDecision, backoff_seconds
from beam_distil.models.structured_output import StructuredOutputSchema, call_arguments, json_schema_of
from beam_distil.runtime_parameters import RuntimeParameter, RuntimeParametersMixin

if TYPE_CHECKING:
    from beam_distil.models.offline_batch import OfflineBatchAPI

ChatItem = Dict[str, Any]
ChatType = List[ChatItem]
"""A conversation: ``[{"role": "system"|"user"|"assistant", "content": "..."}]``."""
StructuredInput = Tuple[ChatType, Optional[StructuredOutputSchema]]
"""distilabel's ``(chat, schema)``: a prompt whose answer must follow its own JSON schema (``StructuredGeneration``)."""
FormattedInput = Union[ChatType, StructuredInput, str]


class LLMStatistics(TypedDict):
    input_tokens: List[int]
    output_tokens: List[int]


class GenerateOutput(TypedDict):
    """What one input produces: ``num_generations`` texts (``None`` where the model gave nothing)."""

    generations: List[Optional[str]]
    statistics: LLMStatistics
    finish_reasons: NotRequired[List[Optional[str]]]
    """Why each generation ended, where the backend says (``"SAFETY"`` explains a ``None`` generation)."""


class LLM(RuntimeParametersMixin, BaseModel, ABC):
    """A text-generation model. Subclasses implement ``model_name`` and ``generate``."""

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,
        validate_default=True,
        extra="forbid",
        protected_namespaces=(),
    )

    completes_raw_text: ClassVar[bool] = False
    """Whether a string input is a raw text completion (no chat template applied), which Magpie needs."""

    follows_structured_output: ClassVar[bool] = True
    """Whether this LLM can be given a JSON schema to follow. A backend that cannot constrain its answers says
    ``False`` (``TransformersLLM``), and a pipeline that gives it a schema is refused before launch. An LLM written
    the distilabel way finds its schema on ``self.structured_output``, as in distilabel (see
    ``takes_schema_per_call``); every answer is validated against the schema either way."""

    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {}
    """The values each numeric generation parameter may take, ``(low, high)`` inclusive, ``None`` for no bound;
    checked before launch, so that a temperature of -3 is an error rather than a request paid for."""

    generation_kwargs: Optional[RuntimeParameter[Dict[str, Any]]] = Field(
        default_factory=dict,
        description="Keyword arguments passed to every generation call (temperature, max_new_tokens, ...).",
    )
    structured_output: Optional[StructuredOutputSchema] = Field(
        default=None, description="A JSON schema (dict) or pydantic model that every answer must follow."
    )

    supports_offline_batch_generation: ClassVar[bool] = False
    """Whether the provider has a batch API this backend speaks (``offline_batch_api``)."""

    use_offline_batch_generation: bool = Field(
        default=False,
        description="Send the task's requests to the provider's batch API (about half the price, answers within"
        " hours) instead of one request at a time. Batch ids are recorded next to the response cache, so a killed"
        " or re-run pipeline collects the same batches and pays nothing twice.",
    )
    offline_batch_generation_block_until_done: Optional[PositiveInt] = Field(
        default=None,
        description="Seconds between polls of the batches until they are done, within the run. None (distilabel's"
        " default): submit, collect what is already done, and end the run with"
        " DistilabelOfflineBatchGenerationNotFinishedException; run the pipeline again later to collect the rest.",
    )
    offline_batch_unanswered: Literal["resend", "fail"] = Field(
        default="resend",
        description="What becomes of requests an expired, cancelled or failed batch left unanswered: 'resend' them"
        " in a new batch (up to offline_batch_max_resends times), or 'fail' their rows (counted, dead-lettered).",
    )
    offline_batch_max_resends: NonNegativeInt = Field(
        default=2, description="How many times a request left unanswered by a batch is sent again in a new batch."
    )
    offline_batch_max_requests: Optional[PositiveInt] = Field(
        default=None,
        description="Most requests in one provider batch (default: the provider's limit). Smaller batches finish"
        " sooner; inputs are split to stay within this and the provider's byte limit.",
    )

    @model_validator(mode="after")
    def _check_offline_batch_generation(self) -> "LLM":
        if self.use_offline_batch_generation and not type(self).supports_offline_batch_generation:
            raise ValueError(
                f"{type(self).__name__} has no provider batch API, so use_offline_batch_generation=True cannot be"
                " used with it: remove it, or use OpenAILLM, AnthropicLLM or VertexAILLM, whose providers have one."
            )
        return self

    jobs_ids: Optional[Tuple[str, ...]] = Field(
        default=None,
        exclude=True,
        description="distilabel's batch ids of a direct offline_batch_generate call still running (a pipeline keeps"
        " its batch ids in the ledger next to the response cache instead).",
    )

    def offline_batch_generate(
        self, inputs: Optional[List[FormattedInput]] = None, num_generations: int = 1, **kwargs: Any
    ) -> List[GenerateOutput]:
        """distilabel's direct batch call; the backends with a batch API implement it
        (``beam_distil.models.offline_batch.DirectOfflineBatchGeneration``)."""
        raise NotImplementedError(f"{type(self).__name__} has no provider batch API")

    def offline_batch_api(self) -> "OfflineBatchAPI":
        """The provider's batch API, made on the worker after ``load()`` (see ``beam_distil.models.offline_batch``)."""
        raise NotImplementedError(f"{type(self).__name__} has no provider batch API")

    use_magpie_template: bool = Field(
        default=False,
        exclude=True,
        description="distilabel's Magpie switch; accepted for compatibility (the Magpie task renders its prompts).",
    )
    magpie_pre_query_template: Optional[str] = Field(
        default=None,
        exclude=True,
        description="The pre-query template Magpie uses with this LLM: 'llama3', 'qwen2', 'chatml' or a custom"
        " string (distilabel's MagpieChatTemplateMixin); only for LLMs that complete raw text.",
    )

    @model_validator(mode="after")
    def _check_magpie_template(self) -> "LLM":
        # Left out of dumps (the Magpie task keeps the template it uses), so that a saved LLM loads in distilabel,
        # whose LLMs without the Magpie mixin refuse these keys; a distilabel file that has them loads here.
        if self.magpie_pre_query_template is not None and not type(self).completes_raw_text:
            raise ValueError(
                f"{type(self).__name__} cannot complete raw text, so it cannot run Magpie: remove"
                " magpie_pre_query_template, or use OpenAILLM, LlamaCppLLM, OllamaLLM, vLLM or TransformersLLM."
            )
        if self.use_magpie_template and self.magpie_pre_query_template is None:
            raise ValueError(
                f"{type(self).__name__}: use_magpie_template=True needs magpie_pre_query_template"
                " ('llama3', 'qwen2', 'chatml' or a custom pre-query string)."
            )
        return self

    @field_validator("structured_output")
    @classmethod
    def _check_structured_output(cls, schema: Optional[StructuredOutputSchema]) -> Optional[StructuredOutputSchema]:
        if schema is not None:
            json_schema_of(schema)  # a format other than JSON is refused here, not on the first row
        return schema

    @field_serializer("structured_output")
    def _serialize_structured_output(self, schema: Optional[StructuredOutputSchema]) -> Optional[Dict[str, Any]]:
        return None if schema is None else json_schema_of(schema)

    def load(self) -> None:
        """Creates the client. Called on the worker before the first generation."""

    def unload(self) -> None:
        """Releases the client."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model's name, written to the ``model_name`` column."""

    @abstractmethod
    def generate(self, inputs: List[FormattedInput], num_generations: int = 1, **kwargs: Any) -> List[GenerateOutput]:
        """One ``GenerateOutput`` per input."""

    def takes_schema_per_call(self) -> bool:
        """Whether ``generate`` (``agenerate`` for an ``AsyncLLM``) has a ``structured_output`` parameter.

        The project's backends do: each call brings its own JSON schema, so one loaded client serves tasks with
        different schemas (one llama.cpp model in memory, one concurrency cap). An LLM written the distilabel way
        has none; as in distilabel, its schema is ``self.structured_output`` (a task's default schema is put
        there, on the task's own copy of the LLM), a ``StructuredGeneration`` row reaches it as a
        ``(chat, schema)`` input, and no call passes it a ``structured_output`` keyword::

            class MyLLM(LLM):
                def generate(self, inputs, num_generations=1):   # reads self.structured_output if it wants
                    ...
        """
        return _takes_schema_per_call(type(self))

    def generation_parameter_names(self) -> List[str]:
        """The keyword arguments a generation call accepts, for validating ``generation_kwargs``."""
        method = self.agenerate if isinstance(self, AsyncLLM) else self.generate
        skip = {"self", "input", "inputs", "num_generations"}
        return [
            name
            for name, parameter in inspect.signature(method).parameters.items()
            if name not in skip and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
        ]

    def check_generation_kwarg(self, name: str, value: Any) -> Optional[str]:
        """Why ``value`` does not fit the generation parameter ``name``, or ``None`` if it does: its type (strictly:
        ``"12"`` is not an int, ``True`` is not a number), a finite number, and the backend's range for it
        (``generation_kwarg_ranges``)."""
        from pydantic import TypeAdapter, ValidationError

        method = self.agenerate if isinstance(self, AsyncLLM) else self.generate
        annotation = inspect.signature(method).parameters[name].annotation
        if isinstance(annotation, str):  # postponed annotations (`from __future__ import annotations`)
            import typing

            annotation = typing.get_type_hints(method).get(name, Any)
        if annotation is not inspect.Parameter.empty:
            try:
                TypeAdapter(annotation).validate_python(value, strict=True)
            except ValidationError as error:
                return f"got {value!r}: {error.errors(include_url=False)[0]['msg']}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"got {value!r}: it must be a finite number"
        low, high = self.generation_kwarg_ranges.get(name, (None, None))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"between {low} and {high}" if low is not None and high is not None else (
                    f"at least {low}" if low is not None else f"at most {high}"
                )
                return f"got {value!r}: {type(self).__name__} takes {name} {bounds}"
        return None

    def check_ready(self) -> List[str]:
        """Problems that would make every call fail (a missing API key...), found before launch."""
        return []

    def prompts_go_to(self) -> Optional[str]:
        """Where this LLM sends its prompts (a URL, or a place), as ``beam-distil pipeline info`` shows it: a
        config can point an LLM, and an API key from the environment, anywhere."""
        return getattr(self, "base_url", None) or getattr(self, "host", None)

    def __getstate__(self) -> Dict[str, Any]:
        # Clients, semaphores and loaded models live in private attributes; they never travel to a worker,
        # which makes its own in load().
        state = super().__getstate__()
        state["__pydantic_private__"] = {
            name: private.get_default() for name, private in self.__private_attributes__.items()
        }
        return state

    def redact(self, text: str) -> str:
        """``text`` with this LLM's secrets removed, for error messages kept in rows and logs."""
        return text

    def redact_error(self, error: BaseException) -> BaseException:
        """``error`` (and the errors it was raised from) with this LLM's secrets removed from its message and
        from the ``message``/``body`` a client library keeps (a server may echo the key it was sent)."""
        seen = set()
        current: Optional[BaseException] = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            current.args = tuple(self.redact(arg) if isinstance(arg, str) else arg for arg in current.args)
            for attribute in ("message", "body"):
                value = getattr(current, attribute, None)
                try:
                    if isinstance(value, str):
                        setattr(current, attribute, self.redact(value))
                    elif isinstance(value, (dict, list)):
                        setattr(current, attribute, json.loads(self.redact(json.dumps(value))))
                except (AttributeError, TypeError, ValueError):  # read-only, or not JSON: left as it is
                    continue
            current = current.__cause__ or current.__context__
        return error

    # Settings that change how calls are made, not what they answer: left out of the response-cache key.
    _operational_fields = {
        "generation_kwargs", "structured_output", "max_concurrency", "max_retries", "retry_base_delay",
        "requests_per_minute", "tokens_per_minute", "timeout", "api_key", "n_threads", "n_batch",
        # A batch answers what an online request answers: its completions serve later online runs, and back.
        "use_offline_batch_generation", "offline_batch_generation_block_until_done", "offline_batch_unanswered",
        "offline_batch_max_resends", "offline_batch_max_requests", "jobs_ids",
    }

    def cache_identity(self) -> Dict[str, Any]:
        """The configuration that decides what this model answers (for the response-cache key)."""
        return self.model_dump(mode="json", exclude=self._operational_fields & set(type(self).model_fields))

    def client_fingerprint(self) -> str:
        """Identifies the client this config makes: equal fingerprints share one client in a process. The schema
        is part of it only for an LLM that reads its schema from itself (``takes_schema_per_call``)."""
        per_call = {"generation_kwargs"} | ({"structured_output"} if self.takes_schema_per_call() else set())
        return f"{type(self).__module__}.{type(self).__qualname__}:{self.model_dump_json(exclude=per_call)}"


@functools.lru_cache(maxsize=None)
def _takes_schema_per_call(llm_class: type) -> bool:
    # Asked on every call: reading a signature costs ~45 us, so it is read once per class.
    method = llm_class.agenerate if issubclass(llm_class, AsyncLLM) else llm_class.generate
    return "structured_output" in inspect.signature(method).parameters


def single_output(
    text: Optional[str], finish_reason: Optional[str], input_tokens: int, output_tokens: int
) -> GenerateOutput:
    """The ``GenerateOutput`` of one generation."""
    return {
        "generations": [text],
        "statistics": {"input_tokens": [input_tokens], "output_tokens": [output_tokens]},
        "finish_reasons": [finish_reason],
    }


def combine_outputs(outputs: Sequence[GenerateOutput]) -> GenerateOutput:
    """One output from several: generations, token counts and finish reasons side by side, in order."""
    return {
        "generations": [g for output in outputs for g in output["generations"]],
        "statistics": {
            "input_tokens": [n for output in outputs for n in output["statistics"]["input_tokens"]],
            "output_tokens": [n for output in outputs for n in output["statistics"]["output_tokens"]],
        },
        "finish_reasons": [
            r for output in outputs for r in (output.get("finish_reasons") or [None] * len(output["generations"]))
        ],
    }


async def generate_each(calls: Iterable[Awaitable[GenerateOutput]]) -> GenerateOutput:
    """Runs several generation calls together (an API without ``n``): once every call has ended, so none is
    left running unobserved, the first error is raised; else their outputs are combined."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return combine_outputs(results)  # type: ignore[arg-type]


def has_text(generation: Optional[str]) -> bool:
    """Whether a generation is a usable answer: some text, not ``None``, empty or only whitespace."""
    return generation is not None and bool(generation.strip())


def why_no_text(generation: Optional[str], reason: Optional[str]) -> str:
    """``"no text (content_filter)"``, ``"empty text (stop)"``: a generation without usable text, and the
    backend's reason when it gave one."""
    what = "empty text" if generation is not None else "no text"
    return f"{what} ({reason})" if reason else what


def missing_answers(output: GenerateOutput) -> List[str]:
    """Why each generation of ``output`` without usable text has none (``"generation 2: content_filter"``),
    from the backend's ``finish_reasons`` where it gave one; empty when every generation has text."""
    generations = output["generations"]
    if not generations:
        return ["the backend returned no generation"]
    reasons = output.get("finish_reasons") or []
    missing = []
    for index, generation in enumerate(generations):
        if not has_text(generation):
            reason = reasons[index] if index < len(reasons) else None
            missing.append(f"generation {index + 1}: {why_no_text(generation, reason)}")
    return missing


def request_parts(
    llm: "AsyncLLM", num_generations: int, kwargs: Dict[str, Any]
) -> List[Tuple[int, Dict[str, Any]]]:
    """``(num_generations, kwargs)`` of each request one input needs: one request with ``n``, or, for an API
    without ``n`` (``llm.one_request_per_generation``), one request per generation, a given ``seed`` offset by the
    generation's index so that the answers differ. ``AsyncLLM.acall`` sends them so online, the batch engine in a
    batch."""
    if not (llm.one_request_per_generation and num_generations > 1):
        return [(num_generations, kwargs)]
    seed = kwargs.get("seed")
    return [(1, kwargs if seed is None else {**kwargs, "seed": seed + part}) for part in range(num_generations)]


@dataclass
class CallOutcome:
    """One generation call after retries: its output, or the last error, and how many retries it took."""

    output: Optional[GenerateOutput]
    error: Optional[BaseException]
    retries: int


class AsyncLLM(LLM, ABC):
    """An LLM whose calls are coroutines; many are in flight at once, within this client's limits.

    ``acall`` wraps each ``agenerate`` with the client's limits (``max_concurrency``, adapting down on rate
    limiting; ``requests_per_minute``; ``tokens_per_minute``) and retries (``max_retries``, ``Retry-After`` or
    exponential backoff with jitter). Limits are per client per worker process (see ``models/limits.py``).
    """

    max_concurrency: RuntimeParameter[PositiveInt] = Field(
        default=64, description="Most requests this client has in flight at once, per worker process."
    )
    max_retries: RuntimeParameter[NonNegativeInt] = Field(
        default=6, description="Retries of a request that failed in a way worth retrying (429, 5xx, timeout, reset, malformed body)."
    )
    retry_base_delay: RuntimeParameter[PositiveFloat] = Field(
        default=0.5, description="Seconds of the first backoff; doubles per retry, with full jitter, up to 60 s."
    )
    requests_per_minute: Optional[RuntimeParameter[PositiveInt]] = Field(
        default=None, description="Most requests per minute, per worker process."
    )
    tokens_per_minute: Optional[RuntimeParameter[PositiveInt]] = Field(
        default=None, description="Most tokens (prompt estimate + max_new_tokens) per minute, per worker process."
    )

    # One private attribute for the three: each read of a pydantic private attribute costs microseconds, paid on
    # every call.
    _call_limits: Optional[Tuple[AdaptiveConcurrencyLimit, RateLimiter, random.Random]] = PrivateAttr(default=None)

    @abstractmethod
    async def agenerate(self, input: FormattedInput, num_generations: int = 1, **kwargs: Any) -> GenerateOutput:
        """Generates ``num_generations`` answers for one input (one attempt, no retries)."""

    def classify_error(self, error: BaseException) -> RetryDecision:
        """Whether ``error`` is worth a retry. Backends override it for their client's exceptions."""
        return RetryDecision(retryable=isinstance(error, (asyncio.TimeoutError, ConnectionError, json.JSONDecodeError)))

    def _limits(self) -> Tuple[AdaptiveConcurrencyLimit, RateLimiter, random.Random]:
        limits = self._call_limits
        if limits is None:
            # Made lazily, on the loop that runs the calls.
            limits = self._call_limits = (
                AdaptiveConcurrencyLimit(self.max_concurrency),
                RateLimiter(self.requests_per_minute, self.tokens_per_minute),
                random.Random(),
            )
        return limits

    @staticmethod
    def _estimated_tokens(input: FormattedInput, kwargs: Dict[str, Any]) -> int:
        if isinstance(input, tuple):  # distilabel's (chat, schema), passed as it is to an LLM written its way
            input = input[0]
        text = input if isinstance(input, str) else " ".join(str(m.get("content", "")) for m in input)
        return len(text) // 4 + int(kwargs.get("max_new_tokens") or 128)

    one_request_per_generation: ClassVar[bool] = False
    """Whether the API gives one generation per request (no ``n``). ``acall`` then makes one call per generation,
    each counted by the limits and retried on its own (a failed one does not make the others be paid again),
    with a given ``seed`` offset by the generation's index so that the answers differ."""

    async def acall(self, input: FormattedInput, num_generations: int = 1, **kwargs: Any) -> CallOutcome:
        """``agenerate`` within this client's limits, retried while the error is worth it. Never raises."""
        if num_generations > 1 and self.one_request_per_generation:
            return await self._acall_each_generation(input, num_generations, kwargs)
        concurrency, rate, rng = self._limits()
        estimate = self._estimated_tokens(input, kwargs)
        retries = 0
        while True:
            await rate.wait(estimate)
            async with concurrency:
                try:
                    with request_in_flight():
                        output = await self.agenerate(input, num_generations=num_generations, **kwargs)
                except Exception as error:  # noqa: BLE001 — classified below, returned, never lost
                    decision = self.classify_error(error)
                    if decision.rate_limited:
                        await concurrency.on_rate_limited()
                    if not decision.retryable or retries >= self.max_retries:
                        return CallOutcome(output=None, error=error, retries=retries)
                else:
                    await concurrency.on_success()
                    used = sum(output["statistics"]["input_tokens"]) + sum(output["statistics"]["output_tokens"])
                    rate.correct_tokens(estimate, used)
                    return CallOutcome(output=output, error=None, retries=retries)
            await asyncio.sleep(backoff_seconds(retries, self.retry_base_delay, decision.retry_after, rng))
            retries += 1

    async def _acall_each_generation(self, input: FormattedInput, num_generations: int, kwargs: Dict[str, Any]) -> CallOutcome:
        outcomes = await asyncio.gather(
            *(
                self.acall(input, num_generations=n, **part_kwargs)
                for n, part_kwargs in request_parts(self, num_generations, kwargs)
            )
        )
        retries = sum(outcome.retries for outcome in outcomes)
        for outcome in outcomes:
            if outcome.error is not None:
                return CallOutcome(output=None, error=outcome.error, retries=retries)
        return CallOutcome(output=combine_outputs([o.output for o in outcomes]), error=None, retries=retries)  # type: ignore[misc]

    def generate(self, inputs: List[FormattedInput], num_generations: int = 1, **kwargs: Any) -> List[GenerateOutput]:
        """Synchronous ``acall`` for every input, concurrently; raises the first error that survived its retries
        (with this LLM's secrets removed from it)."""

        async def generate_one(input: FormattedInput) -> CallOutcome:
            # A (chat, schema) input, as distilabel's LLMs take it, gives the call its schema; else this LLM's own
            # structured_output applies, as when distilabel's LLM is called directly.
            prompt, call_kwargs = call_arguments(self, input, kwargs, default_schema=self.structured_output)
            return await self.acall(prompt, num_generations=num_generations, **call_kwargs)

        async def generate_all() -> List[CallOutcome]:
            return list(await asyncio.gather(*(generate_one(i) for i in inputs)))

        outcomes = run_coroutine(generate_all())
        for outcome in outcomes:
            if outcome.error is not None:
                raise self.redact_error(outcome.error)
        return [outcome.output for outcome in outcomes]  # type: ignore[misc]
