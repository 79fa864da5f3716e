"""``AzureOpenAILLM``: OpenAI models deployed on Azure OpenAI, with distilabel's parameters.

Azure speaks OpenAI's API under another URL scheme and other authentication: each request goes to
``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`` (``/completions`` for a string
input), with the key in an ``api-key`` header, or a Microsoft Entra ID token as ``Authorization: Bearer``. The
rest (body, answers, errors, retries, limits, cache, structured output) is ``OpenAILLM``'s::

    from beam_distil.models import AzureOpenAILLM

    # model is the deployment's name; the endpoint, key and version from AZURE_OPENAI_ENDPOINT,
    # AZURE_OPENAI_API_KEY and OPENAI_API_VERSION
    llm = AzureOpenAILLM(model="gpt-4o-mini-prod")
    llm = AzureOpenAILLM(
        model="gpt-4o-mini-prod",
        base_url="https://my-resource.openai.azure.com",
        api_version="2024-10-21",
        azure_ad_token="gcp-secret://projects/p/secrets/entra-token",   # instead of a key
    )

Credentials follow the ``openai`` SDK's ``AzureOpenAI``: ``api_key`` or ``azure_ad_token`` (not both); when
neither is given, ``AZURE_OPENAI_AD_TOKEN`` and then ``AZURE_OPENAI_API_KEY`` from the worker's environment. Both
are ``SecretStr``: never in a repr, a saved pipeline or an error message. An Entra token expires (about an hour
after it is issued) and is not refreshed here: for a longer job, use a key or a token from Secret Manager that
you keep fresh, read when each worker makes its client.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from pydantic import Field, SecretStr

from beam_distil.helpers import http_url_problem
from beam_distil.models.openai_compatible import OpenAICompatibleLLM, api_key_field
from beam_distil.runtime_parameters import RuntimeParameter

_ENDPOINT_ENV_VAR = "AZURE_OPENAI_ENDPOINT"
_AD_TOKEN_ENV_VAR = "AZURE_OPENAI_AD_TOKEN"
_API_VERSION_ENV_VAR = "OPENAI_API_VERSION"
_ENDPOINT_EXAMPLE = "https://my-resource.openai.azure.com"


class AzureOpenAILLM(OpenAICompatibleLLM):
    """A deployment of Azure OpenAI: ``model`` is the deployment's name, ``base_url`` the resource's endpoint."""

    api_key_env_var: ClassVar[str] = "AZURE_OPENAI_API_KEY"
    # Azure's batches need a Global Batch deployment and take files and batches at the resource's /openai/ paths
    # (not the deployment's), with lines whose url has no /v1: not OpenAI's flow as OpenAIBatchAPI speaks it.
    supports_offline_batch_generation: ClassVar[bool] = False

    model: str = Field(description="The deployment's name (Azure routes by deployment, not by model).")
    base_url: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv(_ENDPOINT_ENV_VAR),
        description=f"The Azure OpenAI endpoint, such as '{_ENDPOINT_EXAMPLE}' (or `{_ENDPOINT_ENV_VAR}`).",
    )
    api_key: Optional[RuntimeParameter[SecretStr]] = api_key_field("AZURE_OPENAI_API_KEY", "Azure OpenAI")
    api_version: Optional[RuntimeParameter[str]] = Field(
        default_factory=lambda: os.getenv(_API_VERSION_ENV_VAR),
        description=f"The API version sent as `?api-version=`, such as '2024-10-21' (or `{_API_VERSION_ENV_VAR}`).",
    )
    azure_ad_token: Optional[RuntimeParameter[SecretStr]] = Field(
        default=None,
        description=f"A Microsoft Entra ID token, instead of a key (or `{_AD_TOKEN_ENV_VAR}` on the worker). May be a"
        " gcp-secret:// reference.",
    )

    def _credential(self) -> Tuple[str, Optional[str]]:
        """``("token" | "api-key", setting)``: the credential requests carry, as the ``openai`` SDK chooses it."""
        if self.azure_ad_token is not None:
            return "token", self.azure_ad_token.get_secret_value()
        if self.api_key is not None:
            return "api-key", self.api_key.get_secret_value()
        if os.getenv(_AD_TOKEN_ENV_VAR):
            return "token", os.environ[_AD_TOKEN_ENV_VAR]
        return "api-key", os.getenv(self.api_key_env_var)

    def _api_key_setting(self) -> Optional[str]:
        # The credential in use, whichever it is: resolved on the worker, redacted from errors, and told apart
        # (by its digest) in the client fingerprint like a key.
        return self._credential()[1]

    def check_ready(self) -> List[str]:
        problems = []
        if not self.base_url:
            problems.append(
                f"AzureOpenAILLM deployment {self.model!r} has no endpoint: pass base_url= (such as"
                f" '{_ENDPOINT_EXAMPLE}') or set the `{_ENDPOINT_ENV_VAR}` environment variable"
            )
        else:
            problem = http_url_problem(self.base_url, f"base_url {self.base_url!r} of deployment {self.model!r}", _ENDPOINT_EXAMPLE)
            if problem:
                problems.append(problem)
        if not self.api_version:
            problems.append(
                f"AzureOpenAILLM deployment {self.model!r} has no API version: pass api_version= (such as"
                f" '2024-10-21') or set the `{_API_VERSION_ENV_VAR}` environment variable"
            )
        if self.api_key is not None and self.azure_ad_token is not None:
            problems.append(
                f"AzureOpenAILLM deployment {self.model!r} got both api_key and azure_ad_token; pass one of them"
            )
        elif not self._api_key_setting():
            problems.append(
                f"no credential for AzureOpenAILLM deployment {self.model!r}: pass api_key= (sent as the api-key"
                " header) or azure_ad_token= (a Microsoft Entra ID token), or set the"
                f" `{self.api_key_env_var}` or `{_AD_TOKEN_ENV_VAR}` environment variable"
            )
        return problems

    def client_options(self, api_key: Optional[str]) -> Dict[str, Any]:  # type: ignore[override]
        """The deployment's URL and ``api-version``; a key as the ``api-key`` header, a token as a Bearer one."""
        deployment = urllib.parse.quote(self.model, safe="")
        options: Dict[str, Any] = {
            "base_url": f"{(self.base_url or '').rstrip('/')}/openai/deployments/{deployment}",
            "params": {"api-version": self.api_version},
        }
        if self._credential()[0] == "token":
            options["api_key"] = api_key
        else:
            options["api_key"] = None
            options["headers"] = {"api-key": api_key}
        return options

    def cache_identity(self) -> Dict[str, Any]:
        # Which credential is used does not change the answers.
        identity = super().cache_identity()
        identity.pop("azure_ad_token", None)
        return identity

    def client_fingerprint(self) -> str:
        # The credential's digest is already in it; a key and a token of the same text are still two clients.
        return f"{super().client_fingerprint()}:{self._credential()[0]}"
