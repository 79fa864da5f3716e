"""``APIKeyLLM``: an async LLM whose provider takes an API key, from the argument or an environment variable.

Subclasses name the variable (``api_key_env_var``) and get what ``OpenAILLM`` does with its key: the key is a
``SecretStr`` (never in a repr, a saved pipeline or a log line), read on the worker when the client is made (so
a key from the environment is not in the job graph), may be a ``gcp-secret://`` Secret Manager reference, is
checked before launch, tells two clients apart by its digest only, and is removed from error messages::

    class AcmeLLM(APIKeyLLM):
        api_key_env_var: ClassVar[str] = "ACME_API_KEY"

        def load(self) -> None:
            self._client = RESTClient(base_url=..., headers={"x-api-key": self.resolve_api_key()}, timeout=60)
"""

from __future__ import annotations

import os
from abc import ABC
from typing import ClassVar, List, Optional

from pydantic import Field, PrivateAttr, SecretStr

from beam_distil.helpers import secret_digest
from beam_distil.models.base import AsyncLLM
from beam_distil.runtime_parameters import RuntimeParameter


class APIKeyLLM(AsyncLLM, ABC):
    """An ``AsyncLLM`` authenticated by an API key (see the module docstring)."""

    api_key_env_var: ClassVar[str] = ""
    """The environment variable the key is read from when ``api_key`` is not given."""

    api_key: Optional[RuntimeParameter[SecretStr]] = Field(
        default=None, description="The API key; when not given, the provider's environment variable on the worker."
    )

    _resolved_key: Optional[str] = PrivateAttr(default=None)

    def _api_key_setting(self) -> Optional[str]:
        """The key as configured: the argument, else the environment; possibly a ``gcp-secret://`` reference."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.getenv(self.api_key_env_var) if self.api_key_env_var else None

    def resolve_api_key(self) -> str:
        """The key itself, read now (on the worker: a Secret Manager reference with the worker's identity)."""
        from beam_distil.secrets import resolve_secret

        setting = self._api_key_setting()
        if not setting:
            raise ValueError(self._missing_key())
        self._resolved_key = resolve_secret(setting)
        return self._resolved_key

    def _missing_key(self) -> str:
        where = f" or set the `{self.api_key_env_var}` environment variable" if self.api_key_env_var else ""
        return f"no API key for {type(self).__name__} model {self.model_name!r}: pass `api_key=`{where}"

    def check_ready(self) -> List[str]:
        return [] if self._api_key_setting() else [self._missing_key()]

    def client_fingerprint(self) -> str:
        # Different keys must not share a client; the digest keeps the key itself out of the fingerprint.
        return f"{super().client_fingerprint()}:{secret_digest(self._api_key_setting() or '')}"

    def redact(self, text: str) -> str:
        # A placeholder key such as "x" for a local server is no secret, and replacing it would garble the text.
        for secret in (self._api_key_setting(), self._resolved_key):
            if secret and len(secret) >= 8:
                text = text.replace(secret, "**********")
        return text
