"""api: the merchant REST API (catalog, customers, checkout, subscriptions, invoices, settings) and the card page."""

import gc

gc.disable()  # the cold start: no cyclic collection while the modules load (docs/benchmarks.md)

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from kassa.api.app import app

gc.freeze()  # what the imports made is kept: later collections skip it
gc.enable()

logger = Logger()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
