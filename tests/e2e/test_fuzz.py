"""Schemathesis over the whole REST API on a started local stack: every operation of /openapi.json,
with the secret key (valid and invalid inputs) and without it, must answer no 5xx and only the
statuses the document declares; without the key every /v1 operation is a 401.

Stateless, derandomized (the same requests on every run) and bounded by ``max_examples`` per
operation and mode: about 1,600 requests in under two minutes (85 s on two cores). ``make fuzz`` runs
the same test with many more examples per operation (KASSA_FUZZ_POSITIVE, KASSA_FUZZ_NEGATIVE,
KASSA_FUZZ_NO_KEY; figures in docs/benchmarks.md, *Fuzzing*).
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

pytestmark = pytest.mark.e2e

# per operation: with the key, schema-valid and schema-invalid inputs; without the key. `make fuzz`
# raises them through KASSA_FUZZ_POSITIVE, KASSA_FUZZ_NEGATIVE and KASSA_FUZZ_NO_KEY.
EXAMPLES = {
    "positive": int(os.environ.get("KASSA_FUZZ_POSITIVE", "10")),
    "negative": int(os.environ.get("KASSA_FUZZ_NEGATIVE", "14")),
    "no_key": int(os.environ.get("KASSA_FUZZ_NO_KEY", "4")),
}
CHECKS = [not_a_server_error, status_code_conformance]


def _settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: report, don't minimise
        suppress_health_check=list(HealthCheck),
    )


def _fuzz(operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str], base_url: str) -> list[int]:
    statuses: list[int] = []
    session = requests.Session()

    @_settings(examples)
    @given(operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(
            base_url=base_url, session=session, headers=headers, checks=CHECKS, timeout=30
        )
        statuses.append(response.status_code)
        if not headers and case.path.startswith("/v1/"):
            assert response.status_code == 401, (case.method, case.formatted_path, response.text)

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):  # nothing to make invalid (no inputs)
        run()
    return statuses


def test_no_input_makes_a_server_error_and_every_status_is_documented(stack_config):
    base_url = stack_config["api_url"]
    schema = schemathesis.openapi.from_url(stack_config["openapi_url"])
    key = {"Authorization": f"Bearer {stack_config['api_secret_key']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 50
    started = time.monotonic()
    figures: collections.Counter[int] = collections.Counter()
    by_mode: dict[str, collections.Counter[int]] = {mode: collections.Counter() for mode in EXAMPLES}
    per_operation: dict[str, int] = {}
    for operation in operations:
        runs = {
            "positive": _fuzz(operation, GenerationMode.POSITIVE, EXAMPLES["positive"], key, base_url),
            "negative": _fuzz(operation, GenerationMode.NEGATIVE, EXAMPLES["negative"], key, base_url),
            "no_key": _fuzz(operation, GenerationMode.POSITIVE, EXAMPLES["no_key"], {}, base_url),
        }
        statuses = [status for run in runs.values() for status in run]
        for mode, run in runs.items():
            by_mode[mode].update(run)
        figures.update(statuses)
        per_operation[operation.label] = len(statuses)
    total = sum(figures.values())
    print(
        f"\nschemathesis: {total} requests over {len(operations)} operations in {time.monotonic() - started:.0f} s"
        f" (examples per operation {EXAMPLES}); statuses {dict(sorted(figures.items()))}"
    )
    for mode, counted in by_mode.items():
        print(f"  {mode}: {dict(sorted(counted.items()))}")
    assert all(count > 0 for count in per_operation.values()), per_operation
    assert total >= 1000, (total, dict(figures))
    assert not [status for status in figures if status >= 500], dict(figures)
