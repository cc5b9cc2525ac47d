"""Messaging: the wiring queues with their DLQs and alarms, the alarm topic, the event bus, its archive and
the rules that route its events into queues (``wiring.EVENT_ROUTES``)."""

from __future__ import annotations

from aws_cdk import Duration, Stack, Tags
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import wiring
from infra.settings import (
    ALARM_EMAIL_CONTEXT,
    DLQ_RETENTION,
    EVENT_ARCHIVE_RETENTION,
    EVENT_SOURCE,
    TAG_DEAD_LETTER_OF,
    TAG_QUEUE,
    acknowledge,
    pascal,
)


class Messaging(Construct):
    """Every ``wiring.QUEUES`` entry becomes an SSL-only, SQS-encrypted queue redriving into its own DLQ.

    Each DLQ has an alarm on ``ApproximateNumberOfMessagesVisible > 0`` that notifies the alarm topic.
    The ``wiring.BUS_NAME`` event bus is archived so that domain events can be replayed. Each
    ``wiring.EVENT_ROUTES`` entry is a rule on that bus (source ``kassa``, the route's detail-types) whose
    target is the route's queue; events EventBridge cannot deliver land in the rule's own DLQ.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.rules: dict[str, events.Rule] = {}

        self.alarm_topic = sns.Topic(self, "AlarmTopic", display_name="kassa alarms", enforce_ssl=True)
        acknowledge(
            self.alarm_topic,
            "AwsSolutions-SNS2",
            "The topic only carries CloudWatch alarm state changes (alarm name, metric, threshold), no "
            "customer or payment data; CloudWatch alarms cannot publish to a topic encrypted with the "
            "AWS-managed SNS key, and a customer-managed key for alarm notices is not worth its cost.",
        )
        email = self.node.try_get_context(ALARM_EMAIL_CONTEXT)
        if email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(str(email)))

        for spec in wiring.QUEUES:
            self._queue(spec)

        self.bus = events.EventBus(self, "Bus", event_bus_name=wiring.BUS_NAME, description="kassa domain events")
        self.archive = events.Archive(
            self,
            "BusArchive",
            source_event_bus=self.bus,
            # every event put on this bus (all of them come from this account)
            event_pattern=events.EventPattern(account=[Stack.of(self).account]),
            retention=EVENT_ARCHIVE_RETENTION,
            description=f"Replay archive of {wiring.BUS_NAME}",
        )
        for route in wiring.EVENT_ROUTES:
            self._event_route(route)

    def _queue(self, spec: wiring.Queue) -> None:
        dlq = self.add_dead_letter_queue(
            f"{pascal(spec.name)}Dlq",
            dead_letter_of=spec.name,
            description=f"Messages of the {spec.name} queue received {spec.max_receive_count} times "
            "without success. Inspect, fix, then redrive them to the source queue.",
        )
        queue = sqs.Queue(
            self,
            pascal(spec.name),
            visibility_timeout=Duration.seconds(spec.visibility_timeout_s),
            retention_period=Duration.days(spec.retention_days),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=spec.max_receive_count),
        )
        Tags.of(queue).add(TAG_QUEUE, spec.name)
        self.queues[spec.name] = queue
        self.dead_letter_queues[spec.name] = dlq

    def _event_route(self, spec: wiring.EventRoute) -> None:
        """A rule on the bus: ``source: [kassa]`` and ``detail-type`` in the route's types -> its queue.

        The queues use SQS-managed SSE, to which EventBridge can deliver (a queue encrypted with the
        AWS-managed ``aws/sqs`` KMS key would refuse it). The ``SqsQueue`` target adds the queue policy
        statement that lets ``events.amazonaws.com`` send, conditioned on this rule's ARN.
        """
        cid = pascal(spec.name)
        dlq = self.add_dead_letter_queue(
            f"{cid}RuleDlq",
            dead_letter_of=f"rule/{spec.name}",
            description=f"Events of the {spec.name} rule that EventBridge could not deliver to the "
            f"{spec.queue} queue after its retries. Look at why (queue policy, deleted queue), then "
            "send them to the queue.",
        )
        acknowledge(
            dlq,
            "AwsSolutions-SQS3",
            f"This queue is itself the dead-letter queue of the {spec.name} EventBridge rule target "
            "(DeadLetterConfig), which cdk-nag does not recognise as a DLQ reference.",
        )
        self.rules[spec.name] = events.Rule(
            self,
            f"{cid}Rule",
            event_bus=self.bus,
            # a managed rule's pattern is put at runtime (kassa.adapters.webhooks.EventBridgeWebhookRule):
            # a fixed name to put it by; deployed with every event, narrowed by the first change
            rule_name=spec.rule_name if spec.managed else None,
            description=f"kassa: routes {', '.join(spec.detail_types) or 'every event'} to the {spec.queue} queue",
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE], detail_type=list(spec.detail_types) if spec.detail_types else None
            ),
            targets=[events_targets.SqsQueue(self.queues[spec.queue], dead_letter_queue=dlq)],
        )

    def add_dead_letter_queue(self, construct_id: str, *, dead_letter_of: str, description: str) -> sqs.Queue:
        """A DLQ (SSL only, SQS-encrypted, 14 days) with its ``messages visible > 0`` alarm.

        ``dead_letter_of`` names what fails into it: a wiring queue, ``schedule/<name>`` or ``rule/<name>``.
        """
        dlq = sqs.Queue(
            self,
            construct_id,
            retention_period=DLQ_RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        Tags.of(dlq).add(TAG_DEAD_LETTER_OF, dead_letter_of)
        alarm = cloudwatch.Alarm(
            self,
            f"{construct_id}Alarm",
            alarm_description=f"kassa: the dead-letter queue of {dead_letter_of} is not empty. {description}",
            metric=dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        self.alarms[dead_letter_of] = alarm
        return dlq
