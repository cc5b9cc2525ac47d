#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth`` / ``npx cdk deploy`` run this with ``.venv/bin/python`` (cdk.json)."""

from infra.stack import create_app

app, _stack = create_app()
app.synth()
