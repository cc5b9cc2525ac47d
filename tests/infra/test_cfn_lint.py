"""cfn-lint on the synthesized template."""

from __future__ import annotations

from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from infra_synth import Synth

REGIONS = ["us-east-1", "eu-central-1"]

# Warnings CDK itself produces and that are harmless, with why.
KNOWN_WARNINGS = {
    # CDK adds an explicit DependsOn on a function's role (and its default policy) next to the
    # Fn::GetAtt on the role ARN; the redundant edge changes nothing.
    "W3005",
}


@pytest.fixture(scope="module")
def matches(synth: Synth) -> list[Any]:
    return lint_file(synth.template_path, ManualArgs(regions=REGIONS))


def test_no_cfn_lint_errors(matches: list[Any]) -> None:
    errors = [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_no_unexpected_cfn_lint_warnings(matches: list[Any]) -> None:
    warnings = [
        f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("W") and m.rule.id not in KNOWN_WARNINGS
    ]
    assert warnings == []
