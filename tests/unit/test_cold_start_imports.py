"""What a function's cold start must not import (docs/benchmarks.md, cold starts): a fresh
interpreter imports each handler, and the heavy modules it only needs on some requests stay out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: imported on first use only: the stripe SDK and boto3 (clients built lazily), Powertools' OpenAPI
#: models and Swagger UI (only /openapi.json and /docs), Jinja2 / babel (emails and pages), the PDF
#: and UBL renderers and the document model they share, python-stdnum (the first tax-id check),
#: analytics, bookkeeping exports and outbound-webhook redelivery (their routes only)
LAZY = (
    "stripe",
    "boto3",
    "jinja2",
    "babel",
    "aws_xray_sdk",
    "aws_lambda_powertools.event_handler.openapi.models",
    "aws_lambda_powertools.event_handler.openapi.swagger_ui",
    "kassa.documents.pdf",
    "kassa.documents.ubl",
    "fpdf",
    "kassa.domain.documents",
    "kassa.services.documents",
    "kassa.emails.render",
    "stdnum",
    "kassa.services.analytics",
    "kassa.services.outbound_webhooks",
    "kassa.services.accounting",
    "kassa.domain.journal",
    "kassa.domain.revenue",
    "kassa.domain.exports",
)


ENV = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}


def _cold_start(function: str, probe: str) -> Any:
    """``result`` as ``probe`` (statements) leaves it after ``import handler`` of functions/<function>
    in a fresh interpreter."""
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'functions' / function)!r}, {str(ROOT / 'layers' / 'kassa' / 'python')!r}]\n"
        "import handler\n"
        f"{probe}\n"
        "print(json.dumps(result))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("function", ["api", "renewal_worker", "renewal_sweep"])
def test_a_cold_start_leaves_the_heavy_modules_for_later(function: str) -> None:
    assert _cold_start(function, f"result = [m for m in {list(LAZY)!r} if m in sys.modules]") == []


_KASSA_MODELS = """
from pydantic import BaseModel
def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)
models = {m for m in subclasses(BaseModel) if m.__module__.startswith("kassa.")}
result = [len(models), sorted(f"{m.__module__}.{m.__qualname__}" for m in models if m.__pydantic_complete__)]
"""


@pytest.mark.parametrize(("function", "at_least"), [("api", 100), ("tax", 20)])
def test_a_rest_cold_start_defines_the_models_but_builds_their_validators_later(function: str, at_least: int) -> None:
    """kassa.api defers every pydantic model's build to its first use (``defer_build``): a cold start
    defines the request and domain models of every route and builds the validators of none."""
    defined, built = _cold_start(function, _KASSA_MODELS)
    assert defined >= at_least
    assert built == []  # not even the settings' default overdue ladder (built on first use)


@pytest.mark.parametrize("function", ["api", "tax", "renewal_worker", "webhook_processor", "dunning"])
def test_a_cold_start_imports_without_cyclic_collections_and_leaves_the_collector_on(function: str) -> None:
    """handler.py turns the cyclic garbage collector off while its modules load (about a tenth of the
    import) and back on after, with what the imports made frozen out of later collections."""
    enabled, frozen = _cold_start(function, "import gc\nresult = [gc.isenabled(), gc.get_freeze_count()]")
    assert enabled is True
    assert frozen > 10_000
