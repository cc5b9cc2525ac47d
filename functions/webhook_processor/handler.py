"""webhook_processor: apply recorded Stripe events to invoices and subscriptions (SQS, partial batch failures)."""

import gc

gc.disable()  # the cold start: no cyclic collection while the modules load (docs/benchmarks.md)

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kassa.adapters import container
from kassa.services.webhooks import process_recorded_event

gc.freeze()  # what the imports made is kept: later collections skip it
gc.enable()

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> str:
    outcome = process_recorded_event(record.json_body, container.billing(), container.files())
    logger.info("stripe event processed", extra={"outcome": outcome, "message_id": record.message_id})
    return outcome


@logger.inject_lambda_context
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
