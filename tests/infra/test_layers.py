"""The two layers: what goes in them and how the dependency layer is built."""

from __future__ import annotations

import json
import re
from pathlib import Path

from infra_cfn import resources
from infra_synth import Synth

from infra import build_layer, settings

ROOT = Path(__file__).resolve().parents[2]


def _requirements(path: Path) -> dict[str, str]:
    """name (lower case, extras dropped) -> full requirement line."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[\[=<>!~ ;]", line, maxsplit=1)[0].lower()
        out[name] = line
    return out


def test_deps_requirements_are_the_runtime_requirements_minus_boto3() -> None:
    runtime = _requirements(ROOT / "requirements.txt")
    deps = _requirements(ROOT / "layers" / "deps" / "requirements.txt")
    runtime.pop("boto3", None)
    assert deps == runtime


def test_build_layer_targets_the_function_runtime() -> None:
    command = build_layer.pip_command(Path("req.txt"), Path("out"), build_layer.PYTHON_VERSION, build_layer.PLATFORM)
    assert settings.RUNTIME.name == f"python{build_layer.PYTHON_VERSION}"
    assert settings.ARCHITECTURE.name == "arm64" and "aarch64" in build_layer.PLATFORM
    assert "--only-binary=:all:" in command
    assert command[command.index("--platform") + 1] == "manylinux2014_aarch64"
    assert command[command.index("--python-version") + 1] == "3.13"


def test_build_layer_dry_run(capsys) -> None:  # type: ignore[no-untyped-def]
    assert build_layer.main(["--dry-run"]) == 0
    assert "--only-binary=:all:" in capsys.readouterr().out


def _layer_asset_dirs(synth: Synth) -> dict[str, Path]:
    """layer logical id -> its staged asset folder in the cloud assembly (through the asset manifest)."""
    manifest = json.loads((synth.outdir / f"{synth.stack.artifact_id}.assets.json").read_text())
    out = {}
    for lid, layer in resources(synth.template_json, "AWS::Lambda::LayerVersion").items():
        asset_hash = layer["Properties"]["Content"]["S3Key"].removesuffix(".zip")
        out[lid] = synth.outdir / manifest["files"][asset_hash]["source"]["path"]
    return out


def test_kassa_layer_ships_the_package_under_python(synth: Synth) -> None:
    dirs = _layer_asset_dirs(synth)
    kassa = [d for d in dirs.values() if (d / "python" / "kassa").is_dir()]
    assert len(kassa) == 1, "layers/kassa must stage as python/kassa/... (the Lambda layer layout)"
    assert not list(kassa[0].rglob("__pycache__"))


def test_deps_layer_synthesizes_from_requirements_alone(synth: Synth) -> None:
    dirs = _layer_asset_dirs(synth)
    deps = [d for d in dirs.values() if (d / "requirements.txt").is_file()]
    assert len(deps) == 1
    if not (settings.DEPS_LAYER_DIR / "python").is_dir():
        warnings = [
            str(entry.data)
            for construct in synth.stack.node.find_all()
            for entry in construct.node.metadata
            if entry.type == "aws:cdk:warning"
        ]
        assert any("make layer" in w for w in warnings), "an unbuilt dependency layer must be flagged"
