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
    wiring.LINKS_SECRET: ({}, "secret_key"),
}
_DEFAULT_PLACEHOLDER: tuple[dict[str, str], str] = ({}, "secret_key")

_DESCRIPTIONS = {
    wiring.STRIPE_SECRET: 'kassa Stripe keys: {"secret_key", "publishable_key", "webhook_secret"} '
    "(placeholders until the merchant puts the real keys in)",
    wiring.API_SECRET: 'kassa API Bearer keys: {"keys": [{"id", "secret", "role", "expires_at"?}]} '
    '(generated as one full key, {"secret_key"}); rolled by hand (docs/operations.md)',
    wiring.LINKS_SECRET: 'kassa customer-link signing keys: {"keys": [{"id", "secret"}]}, the first signs '
    '(generated as {"secret_key"}); rolled by hand, the previous key kept (docs/operations.md)',
}

# Why Secrets Manager rotation is off, per secret (cdk-nag AwsSolutions-SMG4).
_NO_ROTATION = {
    wiring.STRIPE_SECRET: f"{wiring.STRIPE_SECRET} holds keys that Stripe issues: they are rolled in the Stripe "
    "dashboard and then put in with put-secret-value; a Secrets Manager rotation Lambda cannot create Stripe keys.",
    wiring.API_SECRET: f"{wiring.API_SECRET} is the Bearer key the merchant's own API clients hold; rotating it "
    "on a timer would lock them out, so it is rolled by hand: a new key is added and the old one given an "
    "expires_at (docs/operations.md), while both are valid the clients move to the new one.",
    wiring.LINKS_SECRET: f"{wiring.LINKS_SECRET} signs links already in customers' inboxes: a roll must keep the "
    "previous key until the links it signed have expired (card_link_days), which a Secrets Manager rotation "
    "Lambda's single previous version cannot express; it is rolled by hand (docs/operations.md).",
}
_NO_ROTATION_DEFAULT = "{name} is put in by hand from a system outside AWS, which is where it is rotated."


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
            acknowledge(secret, "AwsSolutions-SMG4", _NO_ROTATION.get(name, _NO_ROTATION_DEFAULT.format(name=name)))
            Tags.of(secret).add(TAG_SECRET, name)
            self.secrets[name] = secret
