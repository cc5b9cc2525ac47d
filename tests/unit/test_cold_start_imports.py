"""What a function's cold start must not import (docs/benchmarks.md, cold starts): a fresh
interpreter imports each handler, and the heavy modules it only needs on some requests stay out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: imported on first use only: the stripe SDK and boto3 (clients built lazily), Powertools' OpenAPI
#: models and Swagger UI (only /openapi.json and /docs), Jinja2 / babel (emails), the PDF renderer
LAZY = (
    "stripe",
    "boto3",
    "jinja2",
    "babel",
    "aws_xray_sdk",
    "aws_lambda_powertools.event_handler.openapi.models",
    "aws_lambda_powertools.event_handler.openapi.swagger_ui",
    "kassa.documents.pdf",
)


@pytest.mark.parametrize("function", ["api", "renewal_worker", "renewal_sweep"])
def test_a_cold_start_leaves_the_heavy_modules_for_later(function: str) -> None:
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'functions' / function)!r}, {str(ROOT / 'layers' / 'kassa' / 'python')!r}]\n"
        "import handler\n"
        f"print(json.dumps([m for m in {list(LAZY)!r} if m in sys.modules]))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
