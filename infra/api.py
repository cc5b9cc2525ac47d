"""API: one REST API; every ``wiring`` route is a Lambda proxy integration to its function.

The REST API is created before the functions (``public_url`` goes into their environment) and the
routes are added once the functions exist (``add_routes``).
"""

from __future__ import annotations

from aws_cdk import Aws, Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import wiring
from infra.settings import (
    ACCESS_LOG_RETENTION,
    API_STAGE_NAME,
    API_THROTTLE_BURST,
    API_THROTTLE_RATE,
    acknowledge,
)


def _authorization_reason(fn: wiring.Function, route: wiring.Route) -> str:
    """Why a route has no API Gateway authorizer: each function authenticates its own callers."""
    if wiring.STRIPE_SECRET in fn.secrets and route.method == "POST" and route.path.startswith("/webhooks/"):
        return (
            f"{route.method} {route.path} is called by Stripe, which cannot present a Bearer token or a "
            f"Cognito token; {fn.name} verifies the Stripe-Signature HMAC with the webhook secret in "
            f"{wiring.STRIPE_SECRET} and rejects unsigned requests before touching any data."
        )
    if route.path.startswith("/portal/"):
        return (
            f"{route.method} {route.path} serves the customer portal pages, opened from a signed link in "
            f"a customer email, without login: {fn.name} verifies the link's signed token on every request "
            "and acts only on what the token names; customers are not Cognito users and hold no API key."
        )
    if wiring.API_SECRET in fn.secrets and route.path.startswith("/v1/"):
        return (
            f"{route.method} {route.path} is authenticated by {fn.name} itself: a Bearer secret key "
            f"checked against {wiring.API_SECRET}; kassa is a merchant's back-end API "
            "with API-key clients, not Cognito end users."
        )
    return (
        f"{route.method} {route.path} serves {fn.name}'s public API description (OpenAPI document / docs "
        "page); it reads no data and needs no credentials, the operations it describes do."
    )


class Api(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(self, "AccessLogs", retention=ACCESS_LOG_RETENTION)
        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=wiring.SERVICE_NAME,
            description="kassa subscription billing API and Stripe webhook endpoint",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # invoice and credit-note PDFs (GET /v1/invoices/{id}/pdf, the hosted page's download): the function
            # answers them base64-encoded. API Gateway decodes a response only when the request's Accept matches a
            # binary type, and a browser's Accept starts with text/html, so every type is binary: a proxy response
            # that is not base64-encoded passes as it is, and request bodies arrive base64-encoded, which the
            # handlers decode (kassa.api.common, kassa.api.webhook)
            binary_media_types=["*/*"],
            # the account-level role API Gateway needs to write execution logs
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=API_STAGE_NAME,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # never log request bodies (card-adjacent data, webhook payloads)
                throttling_rate_limit=API_THROTTLE_RATE,
                throttling_burst_limit=API_THROTTLE_BURST,
            ),
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG2",
            "Every route is a Lambda proxy whose function validates the request itself (Powertools "
            "event handler + pydantic models, which are also the source of /openapi.json); duplicating "
            "the schemas as API Gateway models would let the two drift.",
        )
        acknowledge(
            self.rest_api.deployment_stage,
            "AwsSolutions-APIG3",
            "No WAF web ACL by default (a fixed monthly cost per ACL): the stage is throttled, every "
            "operation is authenticated in its function, and a merchant who wants WAF can associate a "
            "web ACL with the stage without changing this stack.",
        )
        cloud_watch_role = self.rest_api.node.try_find_child("CloudWatchRole")
        if cloud_watch_role is not None:
            acknowledge(
                cloud_watch_role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                "This is the account-level role API Gateway itself assumes to write execution logs; "
                "AWS provides exactly this managed policy for it.",
            )

        self.methods: list[apigateway.Method] = []

    def add_routes(self, functions: dict[str, lambda_.Function]) -> None:
        """Every wiring route as a Lambda proxy integration to its function."""
        for fn in wiring.FUNCTIONS:
            for route in fn.routes:
                resource = self.rest_api.root.resource_for_path(route.path)
                method = resource.add_method(
                    route.method,
                    apigateway.LambdaIntegration(functions[fn.name], proxy=True, allow_test_invoke=False),
                )
                reason = _authorization_reason(fn, route)
                acknowledge(method, "AwsSolutions-APIG4", reason)
                acknowledge(method, "AwsSolutions-COG4", reason)
                self.methods.append(method)

    @property
    def url(self) -> str:
        return self.rest_api.url

    @property
    def public_url(self) -> str:
        """The stage's base URL without trailing slash: ``https://<id>.execute-api.<region>.<suffix>/<stage>``.

        Built from the RestApi id alone (the stage name is the literal ``API_STAGE_NAME``). ``url``
        references the stage, hence the deployment, every method and every routed function: a function
        carrying ``url`` in its environment would close a dependency cycle as soon as it has a route.
        """
        return Fn.join(
            "",
            [
                "https://",
                self.rest_api.rest_api_id,
                ".execute-api.",
                Aws.REGION,
                ".",
                Aws.URL_SUFFIX,
                f"/{API_STAGE_NAME}",
            ],
        )
