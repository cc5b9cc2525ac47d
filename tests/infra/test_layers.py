"""The two layers: what goes in them and how the dependency layer is built."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
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
    # bytecode only of the runtime's Python (make layer), never a development interpreter's
    assert all(path.name.endswith(f".{build_layer.BYTECODE_TAG}.pyc") for path in kassa[0].rglob("*.pyc"))


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


def test_only_the_runtimes_bytecode_is_staged(tmp_path: Path) -> None:
    """ASSET_EXCLUDES keeps ``cpython-313`` files and drops every other interpreter's."""
    from aws_cdk import CopyOptions, FileSystem

    source = tmp_path / "source"
    cache = source / "kassa" / "__pycache__"
    cache.mkdir(parents=True)
    (source / "kassa" / "money.py").write_text("X = 1\n")
    for tag in ("cpython-311", build_layer.BYTECODE_TAG, "cpython-312"):
        (cache / f"money.{tag}.pyc").write_bytes(b"")
    (source / ".mypy_cache").mkdir()
    (source / ".mypy_cache" / "x.json").write_text("{}")

    FileSystem.copy_directory(str(source), str(tmp_path / "staged"), CopyOptions(exclude=settings.ASSET_EXCLUDES))

    staged = sorted(str(p.relative_to(tmp_path / "staged")) for p in (tmp_path / "staged").rglob("*") if p.is_file())
    assert staged == ["kassa/__pycache__/money.cpython-313.pyc", "kassa/money.py"]


def test_the_layers_are_compiled_with_checked_hashes_by_the_runtimes_python(tmp_path: Path) -> None:
    """A stale .pyc is never run: checked-hash bytecode is checked against its source at import."""
    command = build_layer.compile_command("python3.13", [tmp_path])
    assert command[:3] == ["python3.13", "-m", "compileall"]
    assert command[command.index("--invalidation-mode") + 1] == "checked-hash"
    (tmp_path / "m.py").write_text("X = 1\n")
    assert build_layer.compile_layers([tmp_path], sys.executable) == 0  # this interpreter, for the flags
    (pyc,) = tmp_path.rglob("*.pyc")
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b11  # hash-based (bit 0) and checked (bit 1), PEP 552


def test_the_kassa_layers_bytecode_is_in_date_with_its_sources() -> None:
    """Bytecode ``make layer`` compiled is checked against its source at import (a stale file is
    only slower, never wrong); still, a source edited after ``make layer`` means the layer should be
    built again before a deploy: this fails until it is."""
    compiled = list(settings.KASSA_LAYER_DIR.rglob(f"*.{build_layer.BYTECODE_TAG}.pyc"))
    python = build_layer.runtime_python()
    if not compiled or python is None:
        pytest.skip("the kassa layer has no runtime bytecode (make layer compiles it)")
    check = (
        "import importlib.util, pathlib, sys\n"
        "stale = []\n"
        "for pyc in map(pathlib.Path, sys.argv[1:]):\n"
        "    source = pyc.parent.parent / (pyc.name.split('.')[0] + '.py')\n"
        "    data = pyc.read_bytes()\n"
        "    checked = data[4:8] == (3).to_bytes(4, 'little')\n"
        "    fresh = checked and source.is_file() and data[8:16] == importlib.util.source_hash(source.read_bytes())\n"
        "    stale += [] if fresh else [str(source)]\n"
        "print('\\n'.join(stale))\n"
    )  # fmt: skip
    result = subprocess.run([python, "-c", check, *map(str, compiled)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"run `make layer` again: stale bytecode for\n{result.stdout}"
