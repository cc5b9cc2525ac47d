"""kassa: subscription billing. Deployed as a Lambda layer; tests and the local stack import this same code."""
