"""Infrastructure knobs that are not part of the wiring, and small helpers shared by the constructs.

``infra/wiring.py`` decides *what* exists (tables, queues, functions, routes, triggers, schedules,
secrets, environment). This module only holds deployment policy that the local stack has no use
for: runtime, log retention, throttling, archive retention. Nothing here names a resource or
repeats a batch size or a timeout.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import IConstruct

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
KASSA_LAYER_DIR = ROOT / "layers" / "kassa"
DEPS_LAYER_DIR = ROOT / "layers" / "deps"

# Every function and both layers. The dependency layer is built for exactly this pair by
# infra/build_layer.py (PYTHON_VERSION, PLATFORM); tests/infra/test_layers.py keeps them in step.
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64

# Never packaged into a Lambda asset.
# bytecode of the Lambda runtime's Python only (``make layer`` compiles it, infra/build_layer.py): a
# development interpreter's __pycache__ files stay behind
ASSET_EXCLUDES = [
    "**/*.pyc",
    "!**/__pycache__/*.cpython-313.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
]

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
ACCESS_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS

# A DLQ keeps messages as long as SQS allows, longer than any source queue.
DLQ_RETENTION = Duration.days(14)

# Replay window of the event bus archive.
EVENT_ARCHIVE_RETENTION = Duration.days(365)

# EventBridge Scheduler retry policy; the maximum event age is the schedule's own period (a tick
# older than the next tick is useless), clamped to what Scheduler accepts (1 minute .. 24 hours).
SCHEDULE_RETRY_ATTEMPTS = 3

# API Gateway stage throttling (requests per second, burst). Stripe retries webhooks on 429.
API_STAGE_NAME = "prod"
API_THROTTLE_RATE = 50
API_THROTTLE_BURST = 100

# Context key: an e-mail address subscribed to the alarm topic (cdk deploy -c kassa:alarmEmail=…).
ALARM_EMAIL_CONTEXT = "kassa:alarmEmail"

# Context key: the sender address of customer e-mails (cdk deploy -c kassa:emailFrom=billing@shop.example).
# It overrides the wiring's KASSA_EMAIL_FROM of every ``sends_email`` function and scopes their SES grant.
EMAIL_FROM_CONTEXT = "kassa:emailFrom"

# The ``source`` of kassa's domain events on the bus (kassa.adapters.eventbridge.SOURCE); the rules of
# ``wiring.EVENT_ROUTES`` match it.
EVENT_SOURCE = "kassa"

# Tags that tie a template resource back to its wiring entry (tests/infra reads them).
TAG_FUNCTION = "kassa:function"
TAG_TABLE = "kassa:table"
TAG_QUEUE = "kassa:queue"
TAG_DEAD_LETTER_OF = "kassa:dead-letter-of"
TAG_SECRET = "kassa:secret"
TAG_BUCKET = "kassa:bucket"


def pascal(name: str) -> str:
    """``webhook_ingest`` / ``webhook-events`` -> ``WebhookIngest`` / ``WebhookEvents`` (construct ids)."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_") if part)


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and its children), always with a specific reason."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule_id} needs a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
