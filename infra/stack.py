"""``KassaStack``: assembles one construct per capability; every resource comes from ``infra/wiring.py``."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import App, CfnOutput, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra import wiring
from infra.api import Api
from infra.data import Data
from infra.functions import Functions
from infra.layers import Layers
from infra.messaging import Messaging
from infra.secret_store import Secrets
from infra.settings import ROOT

STACK_ID = "KassaStack"


class KassaStack(Stack):
    """Data, messaging (queues, bus, event routes), secrets, layers, functions (with their triggers,
    schedules and SES grants) and the API.

    Environment-agnostic (no account/region, no lookups): the same template deploys anywhere and
    synth needs neither network nor Docker.
    """

    def __init__(self, scope: Construct, construct_id: str = STACK_ID, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.data = Data(self, "Data")
        self.messaging = Messaging(self, "Messaging")
        self.secrets = Secrets(self, "Secrets")
        self.layers = Layers(self, "Layers")
        # The REST API exists before the functions (they may carry its public URL); its routes, which
        # integrate with the functions, come after them.
        self.api = Api(self, "Api")
        self.functions = Functions(
            self,
            "Functions",
            data=self.data,
            messaging=self.messaging,
            secrets=self.secrets,
            layers=self.layers,
            public_url=self.api.public_url,
        )
        self.api.add_routes(self.functions.functions)
        Tags.of(self).add("project", wiring.SERVICE_NAME)

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the kassa REST API")
        CfnOutput(
            self,
            "StripeWebhookUrl",
            value=self.api.rest_api.url_for_path("/webhooks/stripe"),
            description="Register this URL as the webhook endpoint in the Stripe dashboard",
        )
        CfnOutput(self, "EventBusName", value=self.messaging.bus.event_bus_name)
        CfnOutput(self, "AlarmTopicArn", value=self.messaging.alarm_topic.topic_arn)
        for name, table in self.data.tables.items():
            CfnOutput(self, f"{table.node.id}TableName", value=table.table_name, description=f"{name} table")


def load_context() -> dict[str, Any]:
    """The feature flags of ``cdk.json``, so that tests synthesize exactly what ``cdk synth`` does."""
    with (ROOT / "cdk.json").open() as f:
        context: dict[str, Any] = json.load(f).get("context", {})
    return context


def create_app(
    outdir: str | None = None, *, nag: bool = True, context: dict[str, Any] | None = None
) -> tuple[App, KassaStack]:
    """The CDK app with ``KassaStack`` and, unless ``nag=False``, the cdk-nag AwsSolutions checks.

    With the checks on, any unacknowledged AwsSolutions error makes ``app.synth()`` fail. ``context`` is
    laid over ``cdk.json``'s (as ``-c key=value`` is, which in turn overrides both).
    """
    app = App(context={**load_context(), **(context or {})}, outdir=outdir)
    stack = KassaStack(
        app,
        STACK_ID,
        description="kassa: subscription billing on AWS Lambda with Stripe (infra/wiring.py)",
    )
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack
