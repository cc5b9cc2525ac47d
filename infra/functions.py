"""Functions and schedules: one Lambda per ``wiring.FUNCTIONS`` entry, with its own role, log group,
queue trigger and EventBridge Scheduler schedule as the wiring declares."""

from __future__ import annotations

import re

from aws_cdk import ArnFormat, Duration, Stack, Tags
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from constructs import Construct

from infra import wiring
from infra.data import Data
from infra.layers import Layers
from infra.messaging import Messaging
from infra.secret_store import Secrets
from infra.settings import (
    ARCHITECTURE,
    ASSET_EXCLUDES,
    EMAIL_FROM_CONTEXT,
    FUNCTIONS_DIR,
    LOG_RETENTION,
    RUNTIME,
    SCHEDULE_RETRY_ATTEMPTS,
    TAG_FUNCTION,
    acknowledge,
    pascal,
)


class CdkResolver(wiring.Resolver):
    """Fills ``wiring.function_environment`` with CDK tokens (resolved by CloudFormation at deploy)."""

    def __init__(self, data: Data, messaging: Messaging, secrets: Secrets, public_url: str) -> None:
        self._data = data
        self._messaging = messaging
        self._secrets = secrets
        self._public_url = public_url

    def table(self, name: str) -> str:
        return self._data.tables[name].table_name

    def queue_url(self, name: str) -> str:
        return self._messaging.queues[name].queue_url

    def secret(self, name: str) -> str:
        return self._secrets.secrets[name].secret_name

    def bus(self) -> str:
        return self._messaging.bus.event_bus_name

    def public_url(self) -> str:
        return self._public_url

    def bucket(self, name: str) -> str:
        return self._data.buckets[name].bucket_name


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def email_sender(spec: wiring.Function, context_value: object | None) -> str:
    """The sender address of a ``sends_email`` function: the ``kassa:emailFrom`` context value if given,
    else the wiring's ``KASSA_EMAIL_FROM`` (``wiring.DEFAULT_EMAIL_FROM`` when the wiring sets none)."""
    sender = str(context_value).strip() if context_value else spec.environment.get(wiring.EMAIL_FROM_ENV, "")
    sender = sender or wiring.DEFAULT_EMAIL_FROM
    if not _EMAIL.fullmatch(sender):
        raise ValueError(f"{EMAIL_FROM_CONTEXT} / {wiring.EMAIL_FROM_ENV} must be an e-mail address, got {sender!r}")
    return sender


ITEM_READ_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem")
ITEM_WRITE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem")
ITEM_APPEND_ACTIONS = ("dynamodb:PutItem",)  # append-only items (the audit trail): created, never changed


def leading_key_patterns(prefixes: tuple[str, ...]) -> list[str]:
    """``StringLike`` patterns of partition-key prefixes: ``WHEVT#`` → ``WHEVT#*``; a whole key stays as is."""
    return [p + "*" if p.endswith("#") else p for p in dict.fromkeys(prefixes)]


def _schedule_max_event_age(every_minutes: int) -> Duration:
    # A tick older than the next tick is useless; Scheduler accepts 1 minute .. 24 hours.
    return Duration.minutes(min(max(every_minutes, 1), 24 * 60))


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        data: Data,
        messaging: Messaging,
        secrets: Secrets,
        layers: Layers,
        public_url: str,
    ) -> None:
        """``public_url``: the API's base URL (no trailing slash) for ``public_url`` functions; it must not
        reference the API stage or deployment (see ``Api.public_url``)."""
        super().__init__(scope, construct_id)
        self._data = data
        self._messaging = messaging
        self._secrets = secrets
        self._layers = layers
        self._resolver = CdkResolver(data, messaging, secrets, public_url)
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.schedules: dict[str, scheduler.Schedule] = {}

        for spec in wiring.FUNCTIONS:
            fn = self._function(spec)
            self._grant(spec, fn)
            if spec.queue_trigger is not None:
                self._trigger(spec.queue_trigger, fn)
            if spec.schedule is not None:
                self._schedule(spec.schedule, fn)

    # -- the function, its role and log group -----------------------------------------------------

    def _function(self, spec: wiring.Function) -> lambda_.Function:
        cid = pascal(spec.name)
        log_group = logs.LogGroup(self, f"{cid}Logs", retention=LOG_RETENTION)
        role = iam.Role(
            self,
            f"{cid}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"kassa {spec.name}: least privilege derived from infra/wiring.py",
        )
        # Instead of AWSLambdaBasicExecutionRole (logs:* on every log group): this log group only.
        log_group.grant_write(role)
        environment = wiring.function_environment(spec, self._resolver)
        if spec.sends_email:
            environment[wiring.EMAIL_FROM_ENV] = self._email_sender(spec)
        fn = lambda_.Function(
            self,
            cid,
            description=spec.description,
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR / spec.name), exclude=ASSET_EXCLUDES),
            handler=spec.handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            tracing=lambda_.Tracing.ACTIVE,
            environment=environment,
            layers=self._layers.all,
            log_group=log_group,
            role=role,
        )
        Tags.of(fn).add(TAG_FUNCTION, spec.name)
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "xray:PutTraceSegments and xray:PutTelemetryRecords (added by tracing=ACTIVE) do not "
            "support resource-level permissions; AWS documents Resource '*' for them.",
        )
        acknowledge(
            fn,
            "AwsSolutions-L1",
            f"Pinned to {RUNTIME.name}: the dependency layer is built from {RUNTIME.name} arm64 wheels "
            "(pydantic-core is compiled per CPython version); the runtime moves together with "
            "infra/build_layer.py PYTHON_VERSION, after the dependencies publish wheels for the next one.",
        )
        self.functions[spec.name] = fn
        self.roles[spec.name] = role
        return fn

    # -- least privilege, straight from the wiring -----------------------------------------------

    def _grant(self, spec: wiring.Function, fn: lambda_.Function) -> None:
        for name in sorted(set(spec.tables_read) | set(spec.tables_write)):
            table = self._data.tables[name]
            prefixes = spec.table_key_prefixes.get(name)
            if prefixes is not None:
                self._grant_items(fn, table, prefixes, write=name in spec.tables_write)
            elif name in spec.tables_write:
                table.grant_read_write_data(fn)
            else:
                table.grant_read_data(fn)
            indexes = ", ".join(index.name for index in self._table_indexes(name))
            if indexes:
                acknowledge(
                    self.roles[spec.name],
                    f"AwsSolutions-IAM5[Resource::<{self._logical_id(table)}.Arn>/index/*]",
                    f"Access to the {name} table's global secondary indexes ({indexes}, declared in "
                    "infra/wiring.py) comes with the table grant; '/index/*' is confined to this one table.",
                )
        for name in spec.queues_send:
            self._messaging.queues[name].grant_send_messages(fn)
        if spec.publishes_events:
            self._messaging.bus.grant_put_events_to(fn)
        for name in spec.puts_rules:  # the outbound webhooks' rule: its pattern and state, nothing else
            rule = self._messaging.rules[name]
            fn.add_to_role_policy(iam.PolicyStatement(actions=["events:PutRule"], resources=[rule.rule_arn]))
        for name in spec.secrets:
            self._secrets.secrets[name].grant_read(fn)
        if spec.sends_email:
            self._grant_send_email(spec, fn)
        for name, prefixes in sorted(spec.buckets.items()):
            self._grant_objects(spec, fn, name, prefixes)

    def _grant_objects(
        self, spec: wiring.Function, fn: lambda_.Function, name: str, prefixes: wiring.KeyPrefixes
    ) -> None:
        """GetObject / PutObject on the objects under the function's key prefixes only (no listing,
        no delete, nothing else in the bucket)."""
        bucket = self._data.buckets[name]
        cfn = bucket.node.default_child
        assert isinstance(cfn, s3.CfnBucket)
        logical = Stack.of(self).get_logical_id(cfn)
        for actions, keys in ((["s3:GetObject"], prefixes.read), (["s3:PutObject"], prefixes.write)):
            if not keys:
                continue
            fn.add_to_role_policy(
                iam.PolicyStatement(actions=actions, resources=[bucket.arn_for_objects(f"{key}*") for key in keys])
            )
        for key in sorted({*prefixes.read, *prefixes.write}):
            acknowledge(
                self.roles[spec.name],
                f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{key}*]",
                f"Objects under '{key}' in the {name} bucket (one object per document or event, named by "
                "its id; declared in infra/wiring.py): the prefix is the narrowest resource that covers them.",
            )

    @staticmethod
    def _grant_items(fn: lambda_.Function, table: dynamodb.Table, prefixes: wiring.KeyPrefixes, *, write: bool) -> None:
        """Item access limited by partition key (``dynamodb:LeadingKeys``), on the table and its indexes.

        ``ForAllValues`` is true of a request without leading keys (a Scan, DescribeTable), so
        ``Null: false`` requires them: such requests are denied.
        """
        resources = [table.table_arn, f"{table.table_arn}/index/*"]

        def statement(actions: list[str], keys: tuple[str, ...]) -> iam.PolicyStatement:
            return iam.PolicyStatement(
                actions=actions,
                resources=resources,
                conditions={
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": leading_key_patterns(keys)},
                    "Null": {"dynamodb:LeadingKeys": "false"},
                },
            )

        fn.add_to_role_policy(statement(list(ITEM_READ_ACTIONS), prefixes.read))
        if write and prefixes.write:
            fn.add_to_role_policy(statement(list(ITEM_WRITE_ACTIONS), prefixes.write))
        if write and prefixes.append:
            fn.add_to_role_policy(statement(list(ITEM_APPEND_ACTIONS), prefixes.append))

    def _email_sender(self, spec: wiring.Function) -> str:
        return email_sender(spec, self.node.try_get_context(EMAIL_FROM_CONTEXT))

    def _grant_send_email(self, spec: wiring.Function, fn: lambda_.Function) -> None:
        """SES SendEmail / SendRawEmail from the sender address only.

        SES authorizes a send against the identity that covers the sender: the address itself, or its
        domain when the merchant verified the domain. Both identity ARNs (this account and region) are
        allowed, and ``ses:FromAddress`` pins the From address to the sender either way.
        """
        sender = self._email_sender(spec)
        stack = Stack.of(self)
        identities = [
            stack.format_arn(
                service="ses",
                resource="identity",
                resource_name=identity,
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
            for identity in (sender, sender.rsplit("@", 1)[1])
        ]
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ses:SendEmail", "ses:SendRawEmail"],
                resources=identities,
                conditions={"StringEquals": {"ses:FromAddress": sender}},
            )
        )

    @staticmethod
    def _table_indexes(name: str) -> tuple[wiring.Index, ...]:
        for table in wiring.TABLES:
            if table.name == name:
                return table.indexes
        raise KeyError(name)

    def _logical_id(self, table: dynamodb.Table) -> str:
        cfn = table.node.default_child
        assert isinstance(cfn, dynamodb.CfnTable)
        return Stack.of(self).get_logical_id(cfn)

    @staticmethod
    def _cfn_function(fn: lambda_.Function) -> lambda_.CfnFunction:
        cfn = fn.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        return cfn

    # -- queue triggers ------------------------------------------------------------------------

    def _trigger(self, trigger: wiring.QueueTrigger, fn: lambda_.Function) -> None:
        fn.add_event_source(
            event_sources.SqsEventSource(
                self._messaging.queues[trigger.queue],
                batch_size=trigger.batch_size,
                max_batching_window=(
                    Duration.seconds(trigger.max_batching_window_s) if trigger.max_batching_window_s else None
                ),
                max_concurrency=trigger.max_concurrency,
                report_batch_item_failures=True,
            )
        )

    # -- schedules -----------------------------------------------------------------------------

    def _schedule(self, spec: wiring.Schedule, fn: lambda_.Function) -> None:
        cid = pascal(spec.name)
        dlq = self._messaging.add_dead_letter_queue(
            f"{cid}ScheduleDlq",
            dead_letter_of=f"schedule/{spec.name}",
            description=f"Invocations of the {spec.name} schedule that failed after "
            f"{SCHEDULE_RETRY_ATTEMPTS} retries. The next tick catches up; look at why it failed.",
        )
        acknowledge(
            dlq,
            "AwsSolutions-SQS3",
            f"This queue is itself the dead-letter queue of the {spec.name} EventBridge Scheduler "
            "target (DeadLetterConfig), which cdk-nag does not recognise as a DLQ reference.",
        )
        # One role per schedule (instead of the stack-wide SchedulerRoleForTarget singleton) so that its
        # permissions (invoke this function, send to this DLQ) are acknowledged where they are made.
        role = iam.Role(
            self,
            f"{cid}ScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            ),
            description=f"kassa: EventBridge Scheduler invoking {spec.name}",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{Stack.of(self).get_logical_id(self._cfn_function(fn))}.Arn>:*]",
            f"grantInvoke also allows the versions and aliases of this one function ('<arn>:*'); the "
            f"role can invoke nothing but {fn.node.id}.",
        )
        self.schedules[spec.name] = scheduler.Schedule(
            self,
            f"{cid}Schedule",
            schedule_name=spec.name,
            description=f"kassa: invokes {fn.node.id} every {spec.every_minutes} minutes",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(spec.every_minutes)),
            target=scheduler_targets.LambdaInvoke(
                fn,
                dead_letter_queue=dlq,
                role=role,
                retry_attempts=SCHEDULE_RETRY_ATTEMPTS,
                max_event_age=_schedule_max_event_age(spec.every_minutes),
            ),
        )
