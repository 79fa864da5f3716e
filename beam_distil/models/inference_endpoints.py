"""``InferenceEndpointsLLM``: Hugging Face Inference Endpoints, Text Generation Inference (TGI) servers and Hugging
Face's serverless Inference Providers, through their OpenAI-compatible Messages API, with distilabel's parameters.

Where requests go, in this order:

* ``base_url``: a TGI server or a dedicated Inference Endpoint, its root URL (``https://<id>.<region>.<vendor>.
  endpoints.huggingface.cloud``, ``http://127.0.0.1:8080``) or that URL with ``/v1``; requests go to
  ``{base_url}/v1/chat/completions`` (``/v1/completions`` for a string input). A key is sent only when there is
  one (a local TGI needs none).
* ``endpoint_name`` (with ``endpoint_namespace``): a dedicated endpoint's URL is not derived from its name (it
  holds a random id) and distilabel asked the Hub API for it while loading. beam_distil makes no network call
  while loading, so such an endpoint needs ``base_url`` too: the URL on its page, or
  ``huggingface_hub.get_inference_endpoint(name, namespace=...).url``. Its name then names the model.
* ``model_id``: serverless, through Hugging Face's Inference Providers router, ``https://router.huggingface.co/v1``
  (OpenAI-compatible; it replaced ``https://api-inference.huggingface.co/models/{model_id}``), with ``model_id``
  as the request's ``model`` (a ``:provider`` suffix picks a provider, as the router allows). A token is needed.

The token comes from ``api_key`` or, on the worker that makes the client, from ``HF_TOKEN``::

    from beam_distil.models import InferenceEndpointsLLM

    InferenceEndpointsLLM(model_id="meta-llama/Llama-3.1-8B-Instruct")                   # serverless
    InferenceEndpointsLLM(base_url="http://10.0.0.7:8080")                               # your TGI server
    InferenceEndpointsLLM(endpoint_name="llama-31-8b", endpoint_namespace="my-org",
                          base_url="https://abc123.us-east-1.aws.endpoints.huggingface.cloud")

TGI returns one choice per request, so ``num_generations`` > 1 is that many requests, each retried on its own (a
``seed`` is offset by the generation's index). Generation kwargs keep distilabel's names (``stop_sequences``,
``max_new_tokens``...); parameters left unset are sent as ``null``, which TGI and OpenAI's schema read as "the
server's default" (TGI refuses ``top_p=1.0``, for one). distilabel's ``text_generation``-only kwargs
(``do_sample``, ``top_k``, ``repetition_penalty``, ``typical_p``, ``watermark``, ``return_full_text``) have no
field in the Messages API and are refused before launch; a server that takes them reads them from ``extra_body``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Tuple, Union

from pydantic import Field, SecretStr, field_validator

from beam_distil.models.base import FormattedInput, GenerateOutput
from beam_distil.models.openai import OpenAILLM
from beam_distil.helpers import http_url_problem
from beam_distil.models.openai_compatible import OpenAICompatibleLLM, api_key_field
from beam_distil.runtime_parameters import RuntimeParameter

SERVERLESS_BASE_URL = "https://router.huggingface.co/v1"
"""Hugging Face's Inference Providers router, where a ``model_id`` without ``base_url`` is sent."""
_TGI_EXAMPLE = "https://<id>.<region>.<vendor>.endpoints.huggingface.cloud"


class InferenceEndpointsLLM(OpenAICompatibleLLM):
    """A Hugging Face Inference Endpoint, a TGI server, or a serverless model (see the module docstring)."""

    api_key_env_var: ClassVar[str] = "HF_TOKEN"
    one_request_per_generation: ClassVar[bool] = True
    generation_kwarg_ranges: ClassVar[Dict[str, Tuple[Optional[float], Optional[float]]]] = {
        **OpenAILLM.generation_kwarg_ranges,
        "top_logprobs": (0, 5),  # TGI's limit
    }

    model_id: Optional[str] = Field(default=None, description="A Hub model id, served serverless (without base_url).")
    endpoint_name: Optional[RuntimeParameter[str]] = Field(
        default=None, description="A dedicated Inference Endpoint's name (its URL goes in base_url)."
    )
    endpoint_namespace: Optional[RuntimeParameter[str]] = Field(
        default=None, description="The user or organization owning the endpoint."
    )
    base_url: Optional[RuntimeParameter[str]] = Field(
        default=None,
        description="A TGI server's or an Inference Endpoint's URL; /v1 is appended unless it ends with it.",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = api_key_field("HF_TOKEN", "Hugging Face")
    tokenizer_id: Optional[str] = Field(
        default=None,
        description="Accepted from distilabel configs; unused: the Messages API applies the model's chat template"
        " on the server, so no tokenizer is downloaded.",
    )
    model_display_name: Optional[str] = Field(default=None, description="The name written to the model_name column.")
    model: Optional[str] = Field(  # type: ignore[assignment]
        default=None,
        description="The `model` named in each request: by default model_id, else 'tgi' (TGI ignores it; a server"
        " that checks it, such as vLLM behind an endpoint, needs its name here).",
    )

    @field_validator("base_url")
    @classmethod
    def _messages_api_path(cls, url: Optional[str]) -> Optional[str]:
        # As huggingface_hub builds the Messages API's URL from an endpoint's: /v1 unless it is already there.
        if url is None or url.rstrip("/").endswith("/v1"):
            return url
        return url.rstrip("/") + "/v1"

    @property
    def model_name(self) -> str:
        return self.model_display_name or self.model_id or self.endpoint_name or self.base_url or ""

    @property
    def serverless(self) -> bool:
        """Whether requests go to Hugging Face's Inference Providers router (a ``model_id``, no ``base_url``)."""
        return self.base_url is None and self.endpoint_name is None and self.model_id is not None

    def check_ready(self) -> List[str]:
        if self.base_url is not None:
            problem = http_url_problem(self.base_url, f"InferenceEndpointsLLM base_url {self.base_url!r}", "http://127.0.0.1:8080")
            return [problem] if problem else []
        if self.endpoint_name is not None:
            namespace = f", namespace={self.endpoint_namespace!r}" if self.endpoint_namespace else ""
            return [
                f"InferenceEndpointsLLM endpoint_name={self.endpoint_name!r} needs base_url too: a dedicated"
                f" endpoint's URL ({_TGI_EXAMPLE}) is known only to the Hugging Face Hub API, which beam_distil"
                " does not call while loading. Pass base_url= with the URL shown on the endpoint's page, or"
                f" huggingface_hub.get_inference_endpoint({self.endpoint_name!r}{namespace}).url"
            ]
        if self.model_id is None:
            return [
                "InferenceEndpointsLLM needs one of base_url (a TGI server or an Inference Endpoint's URL), model_id"
                " (a Hub model, served serverless through Hugging Face's Inference Providers) or endpoint_name"
                " (with its base_url)"
            ]
        if not self._api_key_setting():
            return [
                f"no Hugging Face token for serverless model_id {self.model_id!r}: pass api_key= or set the"
                f" `{self.api_key_env_var}` environment variable"
            ]
        return []

    def client_options(self, api_key: Optional[str]) -> Dict[str, Any]:  # type: ignore[override]
        return {"base_url": self.base_url or SERVERLESS_BASE_URL, "api_key": api_key}

    async def agenerate(  # type: ignore[override]
        self,
        input: FormattedInput,
        num_generations: int = 1,
        max_new_tokens: int = 128,
        frequency_penalty: Optional[float] = None,
        presence_penalty: Optional[float] = None,
        seed: Optional[int] = None,
        stop_sequences: Optional[List[str]] = None,
        temperature: float = 1.0,
        top_p: Optional[float] = None,
        logprobs: bool = False,
        top_logprobs: Optional[int] = None,
        tools: Optional[List[Dict[str, Any]]] = None,
        tool_choice: Optional[Union[str, Dict[str, Any]]] = None,
        tool_prompt: Optional[str] = None,
        response_format: Optional[Dict[str, Any]] = None,
        extra_body: Optional[Dict[str, Any]] = None,
        structured_output: Optional[Dict[str, Any]] = None,
    ) -> GenerateOutput:
        """One Messages API request (``acall`` sends one per generation).

        ``structured_output`` is a JSON schema the answer must follow: TGI's grammar (``{"type": "json_object",
        "value": schema}``) on a server or endpoint, OpenAI's ``json_schema`` response format on the router.
        """
        body: Dict[str, Any] = {
            "model": self.model or self.model_id or "tgi",
            # Unset: null, the server's default.
            "frequency_penalty": frequency_penalty,
            "presence_penalty": presence_penalty,
            "top_p": top_p,
        }
        optional = {"tools": tools, "tool_choice": tool_choice, "tool_prompt": tool_prompt}
        body.update({key: value for key, value in optional.items() if value is not None})
        if structured_output is not None and not self.serverless:
            response_format, structured_output = {"type": "json_object", "value": structured_output}, None
        return await super().agenerate(
            input,
            num_generations=num_generations,
            max_new_tokens=max_new_tokens,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            temperature=temperature,
            stop=stop_sequences,
            seed=seed,
            response_format=response_format,
            extra_body={**body, **(extra_body or {})},
            structured_output=structured_output,
        )
