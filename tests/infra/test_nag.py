"""cdk-nag (AwsSolutions): nothing unacknowledged, and every acknowledgement says why."""

from __future__ import annotations

from aws_cdk import Validations
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks
from infra_synth import Synth


def _findings(synth: Synth) -> list[str]:
    report = AwsSolutionsChecks().validate_scope(synth.stack)
    return [
        f"{v.severity} {v.rule_name} at {r.construct_path}: {v.description}"
        for v in report.violations
        for r in v.violating_resources
    ]


def test_synth_with_nag_succeeds(synth: Synth) -> None:
    assert synth.synth_error is None, f"synth failed (cdk-nag errors?): {synth.synth_error}"


def test_no_unacknowledged_findings(synth: Synth) -> None:
    """Errors and warnings alike: each one is fixed or acknowledged with a reason."""
    assert _findings(synth) == []


def test_no_awssolutions_annotations(synth: Synth) -> None:
    """cdk-nag 3 reports through the validation framework; no AwsSolutions annotation may slip through."""
    annotations = Annotations.from_stack(synth.stack)
    pattern = Match.string_like_regexp("AwsSolutions-.*")
    assert annotations.find_error("*", pattern) == []
    assert annotations.find_warning("*", pattern) == []


def test_every_acknowledgement_has_a_reason(synth: Synth) -> None:
    acknowledged: dict[str, dict[str, str]] = {}
    for construct in synth.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                acknowledged.setdefault(construct.node.path, {}).update(entry.data)
    assert acknowledged, "no acknowledgements found: did the metadata key change?"
    for path, rules in acknowledged.items():
        for rule, reason in rules.items():
            assert "AwsSolutions-" in rule, f"{path}: unexpected acknowledgement {rule}"
            assert isinstance(reason, str) and len(reason.strip()) >= 40, f"{path}: {rule} needs a specific reason"
