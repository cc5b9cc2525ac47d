"""Data: one DynamoDB table per ``wiring.TABLES`` entry."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Tags
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra import wiring
from infra.settings import TAG_TABLE, pascal


class Data(Construct):
    """On-demand tables with point-in-time recovery, AWS-managed encryption, TTL and GSIs (projection per index).

    Tables are retained when the stack is deleted and carry deletion protection: billing history is
    never dropped by an infrastructure change.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.tables: dict[str, dynamodb.Table] = {}
        for spec in wiring.TABLES:
            self.tables[spec.name] = self._table(spec)

    def _table(self, spec: wiring.Table) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            pascal(spec.name),
            partition_key=dynamodb.Attribute(name=spec.partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=spec.sort_key, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=spec.ttl_attribute,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=dynamodb.Attribute(name=index.partition_key, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=index.sort_key, type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType(index.projection),
            )
        Tags.of(table).add(TAG_TABLE, spec.name)
        return table
