"""renewal_worker: invoice, charge and advance each due subscription (SQS, partial batch failures)."""

import gc

gc.disable()  # the cold start: no cyclic collection while the modules load (docs/benchmarks.md)

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kassa.adapters import container

gc.freeze()  # what the imports made is kept: later collections skip it
gc.enable()

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> str:
    from kassa.services import renewals  # imported on first use: the cold start stays light

    body = record.json_body
    subscription_id = body["subscription"]
    if body.get("threshold"):  # usage passed billing_thresholds.amount_gte (sent by meter_ingest)
        from kassa.services import usage

        outcome = usage.bill_threshold(container.billing(), subscription_id)
    else:
        redelivered = int(record.attributes.approximate_receive_count or 1) > 1
        outcome = renewals.process_due(container.billing(), subscription_id, redelivered=redelivered)
    metrics.add_metric(name=f"Renewal_{outcome}", unit=MetricUnit.Count, value=1)
    logger.info("due subscription processed", extra={"subscription": subscription_id, "outcome": outcome})
    return outcome


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
