"""``VertexAILLM``: Gemini models on Vertex AI through the ``google-genai`` SDK.

Example::

    from beam_distil.models import VertexAILLM

    llm = VertexAILLM(model="gemini-2.0-flash", project="my-project", location="us-central1")
    private = VertexAILLM(model="gemini-2.0-flash", base_url="https://my-psc-endpoint.example", project="p")

Why ``google-genai`` and not ``vertexai.generative_models`` (what distilabel 1.5 uses): Google has deprecated the
generative-AI modules of the Vertex AI SDK (``vertexai.generative_models`` and friends) and points to
``google-genai`` as the supported SDK for Gemini on both Vertex AI and the Gemini API. It is also async-native
(``client.aio`` speaks aiohttp/httpx directly, rather than wrapping gRPC stubs), which is what an ``AsyncLLM`` with
many requests in flight on one event loop wants, and it lets us point the client at any endpoint (``base_url``).

Configuration travels to the workers; the client is made there, in ``load()``:

- ``project`` / ``location``: from the arguments, else ``GOOGLE_CLOUD_PROJECT`` / ``GOOGLE_CLOUD_LOCATION`` on
  the worker (location defaults to ``us-central1``).
- credentials: an OAuth access token in ``api_token`` (a ``SecretStr``, never in a repr, dump or log line; given
  to the SDK as ``google.oauth2.credentials.Credentials(token=...)``, which is never refreshed), else Application
  Default Credentials looked up in ``load()``.

``agenerate`` returns distilabel's ``GenerateOutput`` plus one extra key, ``finish_reasons``: one entry per
generation, the candidate's ``finishReason`` (``"STOP"``, ``"MAX_TOKENS"``, ``"SAFETY"``, ...),
``"PROMPT_BLOCKED:<blockReason>"`` when the prompt itself was blocked, or ``None`` for a candidate the server did
not return. A generation whose candidate was blocked (a safety, recitation, blocklist... finish reason) is
``None``, and its finish reason says why.

With ``use_offline_batch_generation=True`` the requests go to Vertex AI batch prediction instead
(``beam_distil.models.vertexai_batch``): the same request bodies, written as JSONL under ``offline_batch_location``
(a ``gs://`` folder), answered at about half the price within a day::

    llm = VertexAILLM(model="gemini-2.0-flash", project="my-project", use_offline_batch_generation=True,
                      offline_batch_location="gs://my-bucket/vertex-batches")
"""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Optional, Tuple, Union

from pydantic import Field, PositiveFloat, PrivateAttr, SecretStr

from beam_distil.helpers import secret_digest
from beam_distil.models.base import AsyncLLM, FormattedInput, GenerateOutput
from beam_distil.models.offline_batch import DirectOfflineBatchGeneration
from beam_distil.models.retries import RetryDecision
from beam_distil.runtime_parameters import RuntimeParameter

if TYPE_CHECKING:
    from beam_distil.models.vertexai_batch import VertexBatchAPI

_PROJECT_ENV_VAR = "GOOGLE_CLOUD_PROJECT"
_LOCATION_ENV_VAR = "GOOGLE_CLOUD_LOCATION"
_DEFAULT_LOCATION = "us-central1"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]

_RETRY_HTTP_STATUS_CODES = (408, 429, 500, 502, 503, 504)

# Finish reasons meaning the answer was withheld by a filter: such a candidate's (partial) text is dropped.
_BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

_ROLES = {"user": "user", "assistant": "model", "model": "model"}


def _enum_name(value: Any) -> Optional[str]:
    """``FinishReason.SAFETY`` -> ``"SAFETY"`` (unknown values may come back as plain strings)."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


class VertexAILLM(DirectOfflineBatchGeneration, AsyncLLM):
    """Gemini ``generateContent`` on Vertex AI; ``input`` is a list of messages or a single user prompt."""

    supports_offline_batch_generation: ClassVar[bool] = True

    # Gemini's documented ranges.
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_new_tokens": (1, None),
        "temperature": (0.0, 2.0),
        "top_p": (0.0, 1.0),
        "top_k": (1, None),
    }

    model: str = Field(description="Gemini model name, e.g. `gemini-2.0-flash`.")
    project: Optional[RuntimeParameter[str]] = Field(
        default=None, description=f"Google Cloud project; when not given, `{_PROJECT_ENV_VAR}` on the worker."
    )
    location: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description=f"Vertex AI region; when not given, `{_LOCATION_ENV_VAR}` on the worker, else `{_DEFAULT_LOCATION}`.",
    )
    base_url: Optional[RuntimeParameter[str]] = Field(
        default=None, description="Endpoint override (a private endpoint, a proxy, a local test server)."
    )
    api_token: Optional[RuntimeParameter[SecretStr]] = Field(
        default=None,
        description="An OAuth access token; when not given, Application Default Credentials on the worker.",
    )
    timeout: RuntimeParameter[PositiveFloat] = Field(default=120, description="Seconds before one request attempt times out.")
    offline_batch_location: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description="A gs:// folder for Vertex AI batch prediction (needed with use_offline_batch_generation=True):"
        " each batch's input.jsonl and output/ go under <folder>/<submission>/. The workers and Vertex AI's service"
        " agent must both be able to read and write it; keep it in the job's region.",
    )

    _aclient: Any = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return self.model

    def _resolved_project(self) -> Optional[str]:
        return self.project or os.getenv(_PROJECT_ENV_VAR) or None

    def _resolved_location(self) -> str:
        return self.location or os.getenv(_LOCATION_ENV_VAR) or _DEFAULT_LOCATION

    def _token(self) -> Optional[str]:
        return self.api_token.get_secret_value() if self.api_token is not None else None

    def _project_problem(self) -> Optional[str]:
        if self._resolved_project():
            return None
        return (
            f"no Google Cloud project for model {self.model!r}: pass `project=` or set the"
            f" `{_PROJECT_ENV_VAR}` environment variable"
        )

    def _offline_batch_location_problem(self) -> Optional[str]:
        location = self.offline_batch_location
        if not location:
            return (
                f"VertexAILLM {self.model!r} has use_offline_batch_generation=True but no offline_batch_location:"
                " set it to a gs:// folder that the workers and Vertex AI's service agent can read and write"
                " (e.g. offline_batch_location='gs://my-bucket/vertex-batches'); each batch's input and output"
                " files are written under it"
            )
        # Vertex AI reads batch input only from Cloud Storage; another path can only work against a test endpoint.
        if not location.startswith("gs://") and not self.base_url:
            return (
                f"VertexAILLM {self.model!r}: offline_batch_location {location!r} is not a gs:// folder, and Vertex"
                " AI batch prediction reads its input from Cloud Storage only: use a gs://bucket/folder path"
            )
        return None

    def check_ready(self) -> List[str]:
        problems = [self._project_problem()]
        if self.use_offline_batch_generation:
            problems.append(self._offline_batch_location_problem())
        return [problem for problem in problems if problem is not None]

    def cache_identity(self) -> Dict[str, Any]:
        # Where batch files are kept changes nothing in the answers, so a batch run and an online run share their
        # cached completions. The base class only leaves out LLM._operational_fields, which has no such field.
        identity = super().cache_identity()
        identity.pop("offline_batch_location", None)
        return identity

    def offline_batch_api(self) -> "VertexBatchAPI":
        """Vertex AI batch prediction for this model, on the client ``load()`` made (see ``vertexai_batch``)."""
        from beam_distil.models.vertexai_batch import VertexBatchAPI

        problem = self._offline_batch_location_problem()
        if problem is not None:
            raise ValueError(problem)
        if self._aclient is None:
            self.load()
        return VertexBatchAPI(self, self._aclient, self.offline_batch_location)  # type: ignore[arg-type]

    def prompts_go_to(self) -> Optional[str]:
        endpoint = f"{self.base_url} " if getattr(self, "base_url", None) else ""
        project = self.project or os.getenv(_PROJECT_ENV_VAR) or f"${_PROJECT_ENV_VAR}"
        location = self.location or os.getenv(_LOCATION_ENV_VAR) or _DEFAULT_LOCATION
        return f"{endpoint}Vertex AI, project {project}, location {location}"

    def client_fingerprint(self) -> str:
        # Different tokens must not share a client; the digest keeps the token itself out of the fingerprint.
        return f"{super().client_fingerprint()}:{secret_digest(self._token() or '')}"

    def redact(self, text: str) -> str:
        token = self._token()
        return text.replace(token, "**********") if token and len(token) >= 8 else text

    def _credentials(self) -> Any:
        token = self._token()
        if token is not None:
            from google.oauth2.credentials import Credentials

            # No refresh token and no expiry: valid as given, never refreshed (anonymous credentials would be).
            return Credentials(token=token)
        import google.auth

        credentials, _ = google.auth.default(scopes=_SCOPES)
        return credentials

    def load(self) -> None:
        from google import genai
        from google.genai import types

        project = self._resolved_project()
        if not project:
            raise ValueError(self._project_problem())
        # Retries are AsyncLLM.acall's (one attempt per SDK call): the SDK's own retries ignore Retry-After for
        # generateContent (google-genai 2.34, `_api_client.retry_args`) and would not adapt concurrency on 429s.
        retry_options = types.HttpRetryOptions(attempts=1)
        http_options = types.HttpOptions(
            base_url=self.base_url,
            timeout=int(self.timeout * 1000),  # milliseconds
            retry_options=retry_options,
        )
        self._aclient = genai.Client(
            vertexai=True,
            project=project,
            location=self._resolved_location(),
            credentials=self._credentials(),
            http_options=http_options,
        ).aio

    def unload(self) -> None:
        self._aclient = None

    def classify_error(self, error: BaseException) -> RetryDecision:
        from google.genai import errors

        if isinstance(error, errors.APIError):
            retryable = error.code in _RETRY_HTTP_STATUS_CODES
            headers = getattr(error.response, "headers", None) or {}
            retry_after = headers.get("retry-after") if retryable else None
            try:
                seconds = float(retry_after) if retry_after is not None else None
            except ValueError:  # an HTTP date: the backoff applies
                seconds = None
            return RetryDecision(retryable=retryable, retry_after=seconds, rate_limited=error.code == 429)
        # The SDK's transports (aiohttp when installed, else httpx) raise their own errors for a refused or dropped
        # connection, which are none of the base class's.
        import aiohttp
        import httpx

        if isinstance(error, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, httpx.TransportError)):
            return RetryDecision(retryable=True)
        return super().classify_error(error)

    @staticmethod
    def _contents(input: FormattedInput) -> "tuple[Optional[str], List[Dict[str, Any]]]":
        """(system instruction, contents) from an OpenAI-style chat."""
        if isinstance(input, str):
            return None, [{"role": "user", "parts": [{"text": input}]}]
        system: List[str] = []
        contents: List[Dict[str, Any]] = []
        for message in input:
            role = message.get("role", "user")
            content = message.get("content")
            text = content if isinstance(content, str) else ("" if content is None else str(content))
            if role == "system":
                system.append(text)
                continue
            if role not in _ROLES:
                raise ValueError(f"unsupported message role {role!r} for Vertex AI (use system, user or assistant)")
            contents.append({"role": _ROLES[role], "parts": [{"text": text}]})
        return ("\n\n".join(system) if system else None), contents

    def generate_content_request(
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        safety_settings: Optional[List[Dict[str, Any]]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """The body of the ``generateContent`` request for ``input`` (Vertex AI's ``GenerateContentRequest`` in its
        REST JSON form, model left out): what ``agenerate`` sends, and what a batch input line holds.

        ``llm.generate_content_request("Hi", max_new_tokens=16)`` is
        ``{"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"candidateCount": 1, "maxOutputTokens": 16}}``.
        """
        system_instruction, contents = self._contents(input)
        generation_config: Dict[str, Any] = {"candidateCount": num_generations, "maxOutputTokens": max_new_tokens}
        optional = {
            "temperature": temperature,
            "topP": top_p,
            "topK": top_k,
            "stopSequences": [stop] if isinstance(stop, str) else stop,
            "seed": seed,
        }
        generation_config.update({key: value for key, value in optional.items() if value is not None})
        if structured_output is not None:
            generation_config.update(responseMimeType="application/json", responseJsonSchema=structured_output)
        request: Dict[str, Any] = {"contents": contents, "generationConfig": generation_config}
        if system_instruction is not None:
            request["systemInstruction"] = {"parts": [{"text": system_instruction}]}
        if safety_settings is not None:
            request["safetySettings"] = safety_settings
        return request

    @staticmethod
    def output_of_response(response: Any, num_generations: int) -> GenerateOutput:
        """The ``GenerateOutput`` of a ``generateContent`` response: the SDK's ``GenerateContentResponse``, or the
        REST JSON of one (a batch prediction's ``response``). Its ``finish_reasons`` are described in the module
        docstring."""
        from google.genai import types

        if isinstance(response, dict):
            # The SDK's own parse of a REST response: fields it does not know are dropped rather than refused.
            response = types.GenerateContentResponse._from_response(response=copy.deepcopy(response), kwargs={})
        generations: List[Optional[str]] = []
        finish_reasons: List[Optional[str]] = []
        feedback = response.prompt_feedback
        block_reason = _enum_name(feedback.block_reason) if feedback is not None else None
        if block_reason is not None and not response.candidates:
            generations = [None] * num_generations
            finish_reasons = [f"PROMPT_BLOCKED:{block_reason}"] * num_generations
        else:
            for candidate in (response.candidates or [])[:num_generations]:
                reason = _enum_name(candidate.finish_reason)
                parts = (candidate.content.parts if candidate.content is not None else None) or []
                texts = [part.text for part in parts if part.text is not None and not part.thought]
                blocked = reason in _BLOCKING_FINISH_REASONS
                generations.append("".join(texts) if texts and not blocked else None)
                finish_reasons.append(reason)
            # A server may return fewer candidates than asked; the missing ones are None rather than absent.
            missing = num_generations - len(generations)
            generations += [None] * missing
            finish_reasons += [None] * missing
        usage = response.usage_metadata
        return {  # type: ignore[typeddict-unknown-key]
            "generations": generations,
            "statistics": {
                "input_tokens": [(usage.prompt_token_count or 0) if usage else 0],
                "output_tokens": [(usage.candidates_token_count or 0) if usage else 0],
            },
            "finish_reasons": finish_reasons,
        }

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        seed: Optional[int] = None,
        safety_settings: Optional[List[Dict[str, Any]]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """One request returning ``num_generations`` candidates (``candidate_count``).

        ``structured_output`` is a JSON schema the answer must follow (sent as ``responseJsonSchema`` with
        ``responseMimeType: application/json``). ``safety_settings`` is a list of
        ``{"category": ..., "threshold": ...}``. The output's extra ``finish_reasons`` key is described in the
        module docstring.
        """
        from google.genai import types

        if self._aclient is None:
            self.load()
        request = self.generate_content_request(
            input,
            num_generations,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop=stop,
            seed=seed,
            safety_settings=safety_settings,
            structured_output=structured_output,
        )
        # The SDK takes the request's top-level settings and its generationConfig as one config (its models accept
        # the REST field names), and turns them back into this same body.
        config = dict(request["generationConfig"])
        config.update({key: request[key] for key in ("systemInstruction", "safetySettings") if key in request})
        response = await self._aclient.models.generate_content(
            model=self.model, contents=request["contents"], config=types.GenerateContentConfig.model_validate(config)
        )
        return self.output_of_response(response, num_generations)
