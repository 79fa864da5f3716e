"""Fixtures of the backends' tests: no provider setting of the machine may reach a test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def no_google_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Google Cloud setting from the environment, and no Application Default Credentials to be found."""
    for name in list(os.environ):
        if name.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_")):
            monkeypatch.delenv(name)
    # Make sure nothing can find ADC on this machine, even by accident.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")
    monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.fixture
def no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Anthropic key or URL from the environment."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
