"""``LiteLLM``: any of the providers LiteLLM speaks to (OpenAI, Anthropic, Bedrock, Ollama, ...) through
``litellm.acompletion``.

An optional extra: ``pip install 'beam-distil[litellm]'``. Without it the class still imports and builds, so a
pipeline that uses it can be saved, validated and drawn anywhere; ``check_ready()`` (run before launch) and
``load()`` say what to install.

Example::

    from beam_distil.models.litellm import LiteLLM

    llm = LiteLLM(model="anthropic/claude-3-5-haiku-latest", generation_kwargs={"max_tokens": 256})
    local = LiteLLM(
        model="openai/my-model",                 # any OpenAI-compatible server
        api_key="unused",
        generation_kwargs={"api_base": "http://127.0.0.1:8000/v1"},
    )

The calls run on the process's event loop (``beam_distil.models.event_loop``) like every ``AsyncLLM``, within
this client's limits and retries (``max_concurrency``, ``max_retries``...): LiteLLM's own retries, and the openai
SDK's beneath it, are turned off, so each request is sent once per attempt. LiteLLM raises openai-style exception
classes whatever the provider; ``classify_error`` retries rate limiting (after ``Retry-After``), timeouts,
connection errors, 408, 409 and 5xx, and gives up on other 4xx.

The API key is ``api_key`` (a ``SecretStr``: never in a repr, a saved pipeline or a log line; it may be a
``gcp-secret://`` reference, read on the worker), else LiteLLM reads the provider's own variable
(``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``...), which ``check_ready`` looks for before launch. Unlike distilabel,
``api_key`` is not a generation keyword argument: those travel with every row and into the response-cache key.
``structured_output`` (a JSON schema) is sent as an OpenAI ``json_schema`` response format, which LiteLLM
translates for providers that take one.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

from pydantic import Field, PositiveFloat

from beam_distil.models.api_key import APIKeyLLM
from beam_distil.models.base import FormattedInput, GenerateOutput
from beam_distil.models.rest import retry_after_seconds
from beam_distil.models.retries import RetryDecision
from beam_distil.helpers import is_installed
from beam_distil.runtime_parameters import RuntimeParameter

INSTALL_HINT = "pip install 'beam-distil[litellm]'"


def import_litellm() -> ModuleType:
    """``litellm``, imported with its bundled model list: by default its import fetches the latest list over the
    network, which a worker without internet access waits for. Setting ``LITELLM_LOCAL_MODEL_COST_MAP`` to
    ``False`` brings the fetch back."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


class LiteLLM(APIKeyLLM):
    """Chat completions (``input`` is a list of messages) through ``litellm.acompletion``."""

    # OpenAI's ranges, which LiteLLM maps onto the other providers'.
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        "max_tokens": (1, None),
        "temperature": (0.0, 2.0),
        "top_p": (0.0, 1.0),
        "presence_penalty": (-2.0, 2.0),
        "frequency_penalty": (-2.0, 2.0),
    }

    model: str = Field(
        description="LiteLLM's model name, with its provider: 'gpt-4o-mini', 'anthropic/claude-...', 'openai/<model>'."
    )
    verbose: RuntimeParameter[bool] = Field(
        default=False, description="Let LiteLLM log and print (its loggers are silenced otherwise)."
    )
    timeout: RuntimeParameter[PositiveFloat] = Field(
        default=120, description="Seconds before one request attempt times out."
    )

    _operational_fields = APIKeyLLM.__private_attributes__["_operational_fields"].default | {"verbose"}

    @property
    def model_name(self) -> str:
        return self.model

    def prompts_go_to(self) -> Optional[str]:
        api_base = (self.generation_kwargs or {}).get("api_base")
        return api_base or f"LiteLLM's endpoint for {self.model!r}"

    def _not_installed(self) -> Optional[str]:
        if is_installed("litellm"):
            return None
        return f"LiteLLM model {self.model!r} needs litellm, which is not installed here: {INSTALL_HINT}."

    def check_ready(self) -> List[str]:
        not_installed = self._not_installed()
        if not_installed:
            return [not_installed]
        litellm = import_litellm()
        self._quiet(litellm)
        kwargs = self.generation_kwargs or {}
        try:
            litellm.get_llm_provider(
                self.model, custom_llm_provider=kwargs.get("custom_llm_provider"), api_base=kwargs.get("api_base")
            )
        except Exception:  # noqa: BLE001 — LiteLLM's BadRequestError, whose text is a page of links
            return [
                f"LiteLLM cannot tell the provider of model {self.model!r}: name it with its provider ('openai/...',"
                " 'anthropic/...', 'ollama/...'), or set `custom_llm_provider` in generation_kwargs."
            ]
        if self._api_key_setting():
            return []
        # Only keys: LiteLLM also lists settings (OLLAMA_API_BASE, VERTEXAI_PROJECT) that may come from elsewhere.
        missing = litellm.validate_environment(model=self.model, api_base=kwargs.get("api_base")).get("missing_keys")
        keys = [name for name in missing or [] if "KEY" in name or "TOKEN" in name]
        if keys:
            listed = " or ".join(f"`{name}`" for name in keys)
            return [f"no API key for LiteLLM model {self.model!r}: pass `api_key=` or set {listed}"]
        return []

    def load(self) -> None:
        not_installed = self._not_installed()
        if not_installed:
            raise ImportError(not_installed)
        litellm = import_litellm()
        litellm.telemetry = False
        self._quiet(litellm)
        if self._api_key_setting():
            self.resolve_api_key()

    def _quiet(self, litellm: ModuleType) -> None:
        """Unless ``verbose``, LiteLLM prints no help banners and logs nothing below CRITICAL (its errors come back
        in the rows)."""
        if self.verbose:
            return
        litellm.suppress_debug_info = True
        for name in list(logging.Logger.manager.loggerDict):
            if "litellm" in name.lower():
                logging.getLogger(name).setLevel(logging.CRITICAL)

    def classify_error(self, error: BaseException) -> RetryDecision:
        import openai

        if isinstance(error, openai.RateLimitError):
            return RetryDecision(retryable=True, retry_after=_retry_after(error), rate_limited=True)
        if isinstance(error, openai.APIConnectionError):  # timeouts too
            return RetryDecision(retryable=True)
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            retryable = status in (408, 409) or status >= 500
            return RetryDecision(retryable=retryable, retry_after=_retry_after(error) if retryable else None)
        return super().classify_error(error)

    @staticmethod
    def _estimated_tokens(input: FormattedInput, kwargs: Dict[str, Any]) -> int:
        return APIKeyLLM._estimated_tokens(input, {"max_new_tokens": kwargs.get("max_tokens") or 128})

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        temperature: Optional[float] = 1.0,
        top_p: Optional[float] = 1.0,
        stop: Optional[Union[str, List[str]]] = None,
        max_tokens: Optional[int] = None,
        presence_penalty: Optional[float] = None,
        frequency_penalty: Optional[float] = None,
        logit_bias: Optional[Dict[str, int]] = None,
        seed: Optional[int] = None,
        user: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        api_base: Optional[str] = None,
        api_version: Optional[str] = None,
        custom_llm_provider: Optional[str] = None,
        mock_response: Optional[str] = None,
        response_format: Optional[Dict[str, Any]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """``num_generations`` answers with their finish reasons and token usage. Providers that ignore ``n``
        are asked again for the answers still missing (one request per answer at most). ``structured_output``
        is a JSON schema the answer must follow."""
        litellm = import_litellm()

        if isinstance(input, str):
            raise ValueError(f"LiteLLM model {self.model!r} takes a chat (a list of messages), not a raw prompt string.")
        if structured_output is not None:
            response_format = {"type": "json_schema", "json_schema": {"name": "output", "schema": structured_output}}
        request: Dict[str, Any] = {
            "model": self.model,
            "messages": input,
            "temperature": temperature,
            "top_p": top_p,
            "stop": stop,
            "max_tokens": max_tokens,
            "presence_penalty": presence_penalty,
            "frequency_penalty": frequency_penalty,
            "logit_bias": logit_bias,
            "seed": seed,
            "user": user,
            "metadata": metadata,
            "api_base": api_base,
            "api_version": api_version,
            "custom_llm_provider": custom_llm_provider,
            "mock_response": mock_response,
            "response_format": response_format,
            "api_key": self._resolved_key or (self.resolve_api_key() if self._api_key_setting() else None),
            "timeout": self.timeout,
        }
        # Retries are this client's (AsyncLLM.acall): neither LiteLLM nor the openai SDK under it may add theirs.
        request = {key: value for key, value in request.items() if value is not None}
        request.update(num_retries=0, max_retries=0)

        generations: List[Optional[str]] = []
        finish_reasons: List[Optional[str]] = []
        input_tokens = output_tokens = 0
        for _ in range(num_generations):
            wanted = num_generations - len(generations)
            try:
                response = await litellm.acompletion(n=wanted, **request)
            except litellm.UnsupportedParamsError:
                # A provider that rejects a parameter (`n`, `seed`...) is asked again without what it cannot take.
                request["drop_params"] = True
                response = await litellm.acompletion(n=wanted, **request)
            choices = list(response.choices)[:wanted]
            for choice in choices:
                generations.append(choice.message.content)
                finish_reasons.append(choice.finish_reason)
            usage = getattr(response, "usage", None)
            input_tokens += getattr(usage, "prompt_tokens", 0) or 0
            output_tokens += getattr(usage, "completion_tokens", 0) or 0
            if not choices or len(generations) >= num_generations:
                break
        missing = num_generations - len(generations)
        generations += [None] * missing
        finish_reasons += [f"the provider returned {num_generations - missing} of {num_generations} choices"] * missing
        return {
            "generations": generations,
            "statistics": {"input_tokens": [input_tokens], "output_tokens": [output_tokens]},
            "finish_reasons": finish_reasons,
        }


def _retry_after(error: BaseException) -> Optional[float]:
    """Seconds the provider asked to wait, from the answer's headers as LiteLLM keeps them."""
    response_headers = getattr(getattr(error, "response", None), "headers", None)
    headers = response_headers or getattr(error, "litellm_response_headers", None) or {}
    return retry_after_seconds({str(name).lower(): value for name, value in dict(headers).items()})
