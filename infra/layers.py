"""Layers: the shared ``kassa`` package and its third-party dependencies."""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.settings import ARCHITECTURE, ASSET_EXCLUDES, DEPS_LAYER_DIR, KASSA_LAYER_DIR, RUNTIME


class Layers(Construct):
    """``layers/kassa`` (domain, services, adapters: the code the tests and the local stack import) and
    ``layers/deps`` (Powertools, stripe, pydantic as arm64 / CPython 3.13 wheels).

    ``layers/deps/python`` is filled by ``make layer`` (``python infra/build_layer.py``) before a
    deploy. Synth does not need it: without it the layer holds only ``requirements.txt`` and a
    warning says so; deploying that would leave the functions without their dependencies.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.kassa = lambda_.LayerVersion(
            self,
            "Kassa",
            code=lambda_.Code.from_asset(str(KASSA_LAYER_DIR), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="kassa shared code: domain, services, adapters",
        )
        self.deps = lambda_.LayerVersion(
            self,
            "Deps",
            code=lambda_.Code.from_asset(str(DEPS_LAYER_DIR), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="kassa runtime dependencies (layers/deps/requirements.txt)",
        )
        if not (DEPS_LAYER_DIR / "python").is_dir():
            Annotations.of(self.deps).add_warning_v2(
                "kassa:deps-layer-not-built",
                "layers/deps/python does not exist: run `make layer` (python infra/build_layer.py) "
                "before `cdk deploy`, or the functions will miss their dependencies.",
            )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.deps, self.kassa]
