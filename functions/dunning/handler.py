"""dunning: payment retries, the overdue ladder and customer emails.

Two triggers, one service (``kassa.services.dunning``):
- the ``dunning-sweep`` schedule: everything due in the dunning index (retries, overdue steps,
  expiring cards, win-back timers);
- the ``notifications`` queue (EventBridge → SQS): customer-facing domain events, with partial
  batch failures so that one bad message is retried (and finally kept in the DLQ) alone.
"""

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
    envelope = record.json_body
    outcome = container.dunning().handle_event(envelope)
    logger.info(
        "notification handled",
        extra={"type": envelope.get("detail-type"), "outcome": outcome, "message_id": record.message_id},
    )
    return outcome


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    outcomes = container.dunning().sweep(container.env().due_shards)
    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"Dunning_{outcome.split(':')[0]}", unit=MetricUnit.Count, value=count)
    logger.info("dunning sweep", extra={"outcomes": outcomes})
    return {"outcomes": outcomes}
