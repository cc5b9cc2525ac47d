"""Dummy webhook endpoint: verifies localstripe's signature with the secret from Secrets Manager."""

import json
import os

import boto3
import stripe

EVENTS: list[str] = []


def lambda_handler(event, context):
    secret = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["STRIPE_SECRET_NAME"])["SecretString"]
    )["webhook_secret"]
    signature = next(v for k, v in event["headers"].items() if k.lower() == "stripe-signature")
    verified = stripe.Webhook.construct_event(event["body"], signature, secret)
    EVENTS.append(verified["type"])
    return {"statusCode": 200, "body": "{}"}
