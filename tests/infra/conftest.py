"""Synthesizes ``KassaStack`` once per test session, exactly as ``app.py`` does (cdk.json context, cdk-nag on)."""

from __future__ import annotations

import os
from typing import Any

import pytest

# jsii prints a banner for end-of-life Node versions on every start; it is noise in test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

from aws_cdk.assertions import Template  # noqa: E402
from infra_synth import Synth, synthesize  # noqa: E402


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def template(synth: Synth) -> Template:
    return synth.template


@pytest.fixture(scope="session")
def cfn(synth: Synth) -> dict[str, Any]:
    """The synthesized template as plain JSON."""
    return synth.template_json
