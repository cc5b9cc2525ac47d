"""One synthesis of the real app (``infra.stack.create_app``, as ``app.py`` runs it) for the whole session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from infra.stack import KassaStack, create_app


@dataclass
class Synth:
    app: App
    stack: KassaStack
    outdir: Path
    template_path: Path
    template_json: dict[str, Any]
    template: Template
    # cdk-nag reports unacknowledged errors by failing app.synth(); the template is written anyway,
    # so every other test still runs and test_nag reports the failure.
    synth_error: Exception | None


def synthesize(outdir: Path) -> Synth:
    app, stack = create_app(str(outdir))
    error: Exception | None = None
    try:
        app.synth()
    except RuntimeError as exc:
        error = exc
    template_path = outdir / stack.template_file
    template_json = json.loads(template_path.read_text())
    return Synth(
        app=app,
        stack=stack,
        outdir=outdir,
        template_path=template_path,
        template_json=template_json,
        template=Template.from_json(template_json),
        synth_error=error,
    )
