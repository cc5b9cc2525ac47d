"""Data: one DynamoDB table per ``wiring.TABLES`` entry, one S3 bucket per ``wiring.BUCKETS`` entry."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Tags
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import wiring
from infra.settings import TAG_BUCKET, TAG_TABLE, pascal


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
        self.buckets: dict[str, s3.Bucket] = {}
        if wiring.BUCKETS:
            # S3 server access logs (cdk-nag AwsSolutions-S1) go to a bucket of their own
            self.access_logs = s3.Bucket(
                self,
                "AccessLogs",
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
                lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
                removal_policy=RemovalPolicy.RETAIN,
            )
        for bucket in wiring.BUCKETS:
            self.buckets[bucket.name] = self._bucket(bucket)

    def _bucket(self, spec: wiring.Bucket) -> s3.Bucket:
        """Private (every public access blocked), encrypted at rest, TLS only, versioned, retained:
        issued invoices are records a merchant must keep for years (ten in some EU countries)."""
        bucket = s3.Bucket(
            self,
            f"{pascal(spec.name)}Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{spec.name}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    prefix=prefix, expiration=Duration.days(days), noncurrent_version_expiration=Duration.days(1)
                )
                for prefix, days in sorted(spec.expire_days.items())
            ]
            or None,
            removal_policy=RemovalPolicy.RETAIN,
        )
        Tags.of(bucket).add(TAG_BUCKET, spec.name)
        return bucket

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
