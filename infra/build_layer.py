"""Build the dependency layer: arm64 / CPython 3.13 wheels into ``layers/deps/python``.

    python infra/build_layer.py            # what `make layer` runs, before `cdk deploy`
    python infra/build_layer.py --dry-run  # print the pip command only

Pure pip, no Docker: ``--platform manylinux2014_aarch64 --only-binary=:all:`` makes pip pick the
wheels Lambda's arm64 Python 3.13 runtime needs, whatever machine builds them. The target folder is
emptied first, so a removed dependency does not linger in the layer. This module never imports
aws_cdk, so it runs with any Python that has pip.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPS_DIR = ROOT / "layers" / "deps"
# Keep in step with infra/settings.py RUNTIME / ARCHITECTURE (not imported: that would import aws_cdk).
PYTHON_VERSION = "3.13"
PLATFORM = "manylinux2014_aarch64"
# Shipped by the Lambda Python runtime: dropped if a dependency ever pulls them in.
PRUNE = ("boto3", "botocore", "s3transfer")


def pip_command(requirements: Path, target: Path, python_version: str, platform: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--upgrade",
        "--target",
        str(target),
        "--requirement",
        str(requirements),
    ]


def _prune(target: Path) -> None:
    for path in list(target.iterdir()):
        name = path.name.split("-")[0].lower()
        if name in PRUNE:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: nothing runs them in Lambda
    for cache in target.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requirements", type=Path, default=DEPS_DIR / "requirements.txt")
    parser.add_argument("--target", type=Path, default=DEPS_DIR / "python")
    parser.add_argument("--python-version", default=PYTHON_VERSION)
    parser.add_argument("--platform", default=PLATFORM)
    parser.add_argument("--dry-run", action="store_true", help="print the pip command and exit")
    args = parser.parse_args(argv)

    command = pip_command(args.requirements, args.target, args.python_version, args.platform)
    print(" ".join(command))
    if args.dry_run:
        return 0
    if args.target.exists():
        shutil.rmtree(args.target)
    args.target.mkdir(parents=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        return result.returncode
    _prune(args.target)
    print(f"dependency layer ready in {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
