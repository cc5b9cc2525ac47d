"""analytics: keep the subscription analytics up to date (docs/analytics.md).

Two ways in, one service (``kassa.services.analytics``):
- the ``analytics`` queue (EventBridge → SQS): each subscription or invoice event names a customer whose
  figures are recomputed from the store and applied as a difference, once per customer of a batch
  (``analytics.Batch``; partial batch failures: a bad message, or the records of a customer whose
  refresh failed, are retried, and finally kept in the DLQ, without the rest of the batch);
- a direct invocation ``{"action": "rebuild"}`` (``aws lambda invoke``): everything recomputed from the
  subscriptions and invoices.
"""

import gc

gc.disable()  # the cold start: no cyclic collection while the modules load (docs/benchmarks.md)

from functools import partial

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kassa.adapters import container
from kassa.services import analytics

gc.freeze()  # what the imports made is kept: later collections skip it
gc.enable()

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord, batch: analytics.Batch) -> str:
    envelope = record.json_body
    outcome = batch.handle(envelope)
    logger.info("analytics event", extra={"type": envelope.get("detail-type"), "outcome": outcome})
    return outcome


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if "Records" in event:
        # one Batch per invocation: each customer refreshed once, its records failed together
        batch = analytics.Batch(container.store(), container.analytics())
        return process_partial_response(
            event=event, record_handler=partial(record_handler, batch=batch), processor=processor, context=context
        )
    if event.get("action") != "rebuild":
        raise ValueError('the analytics function takes SQS records or {"action": "rebuild"}')
    summary = analytics.rebuild(container.store(), container.analytics())
    logger.info("analytics rebuilt", extra={"customers": summary.customers, "aggregates": summary.aggregates})
    return {"customers": summary.customers, "aggregates": summary.aggregates}
