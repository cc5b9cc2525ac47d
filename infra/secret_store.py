"""Secrets: one Secrets Manager secret per ``wiring.SECRETS`` name, created with placeholder values.

The merchant puts the real Stripe keys in after the first deploy (docs/infrastructure.md):

    aws secretsmanager put-secret-value --secret-id kassa/stripe --secret-string file://stripe.json

Until then the Stripe secret holds ``REPLACE_ME`` keys and a random webhook secret, so every Stripe
call and every webhook signature check fails closed. The API secret's generated ``secret_key`` is a
usable random Bearer key (read it back with ``aws secretsmanager get-secret-value``) or replace it.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy, Tags
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import wiring
from infra.settings import TAG_SECRET, acknowledge, pascal

# secret name -> (fixed placeholder keys, the key whose value is generated)
_PLACEHOLDERS: dict[str, tuple[dict[str, str], str]] = {
    wiring.STRIPE_SECRET: (
        {"secret_key": "sk_REPLACE_ME", "publishable_key": "pk_REPLACE_ME"},
        "webhook_secret",
    ),
    wiring.API_SECRET: ({}, "secret_key"),
}
_DEFAULT_PLACEHOLDER: tuple[dict[str, str], str] = ({}, "secret_key")

_DESCRIPTIONS = {
    wiring.STRIPE_SECRET: 'kassa Stripe keys: {"secret_key", "publishable_key", "webhook_secret"} '
    "(placeholders until the merchant puts the real keys in)",
    wiring.API_SECRET: 'kassa API Bearer key: {"secret_key"}',
}


class Secrets(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.secrets: dict[str, secretsmanager.Secret] = {}
        for name in wiring.SECRETS:
            fixed, generated_key = _PLACEHOLDERS.get(name, _DEFAULT_PLACEHOLDER)
            secret = secretsmanager.Secret(
                self,
                pascal(name.replace("/", "_")),
                secret_name=name,
                description=_DESCRIPTIONS.get(name, f"kassa secret {name}"),
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    secret_string_template=json.dumps(fixed),
                    generate_string_key=generated_key,
                    exclude_punctuation=True,
                    password_length=48,
                ),
                # the real keys are put in by hand: keep them when the stack is deleted
                removal_policy=RemovalPolicy.RETAIN,
            )
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                f"{name} holds keys issued outside AWS (Stripe dashboard / the merchant's API clients); "
                "they are rotated there and put in with put-secret-value, so a Secrets Manager rotation "
                "Lambda could not rotate them.",
            )
            Tags.of(secret).add(TAG_SECRET, name)
            self.secrets[name] = secret
