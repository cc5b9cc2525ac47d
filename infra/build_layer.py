"""Build the dependency layer: arm64 / CPython 3.13 wheels into ``layers/deps/python``, then compile
both layers (deps and kassa) to CPython 3.13 bytecode.

    python infra/build_layer.py            # what `make layer` runs, before `cdk deploy`
    python infra/build_layer.py --dry-run  # print the pip command only

Pure pip, no Docker: ``--platform manylinux2014_aarch64 --only-binary=:all:`` makes pip pick the
wheels Lambda's arm64 Python 3.13 runtime needs, whatever machine builds them. The target folder is
emptied first, so a removed dependency does not linger in the layer. This module never imports
aws_cdk, so it runs with any Python that has pip.

Bytecode: Lambda's ``/opt`` is read-only, so a layer without ``__pycache__`` is compiled from source at
every cold start (the api function: ~100 ms of its import time, docs/benchmarks.md). The layers are
compiled with the runtime's own interpreter (``python3.13``: bytecode is per minor version) in
``checked-hash`` mode: the ``.pyc`` carries a hash of its source, so a stale one (a source edited
after ``make layer``) is never run — Python compiles the source instead, as without bytecode — and
file times, which zips and asset staging do not keep, do not matter. Only ``cpython-313`` files are
staged (``infra/settings.py`` ASSET_EXCLUDES).
"""

from __future__ import annotations

import argparse
import glob
import os
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
KASSA_DIR = ROOT / "layers" / "kassa" / "python"
BYTECODE_TAG = "cpython-" + PYTHON_VERSION.replace(".", "")  # the __pycache__ suffix Lambda's runtime reads
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


def runtime_python(version: str = PYTHON_VERSION) -> str | None:
    """An interpreter of the Lambda runtime's version that runs (on PATH, or a pyenv one), or None."""
    pyenv = os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")
    candidates = [shutil.which(f"python{version}"), *sorted(glob.glob(pyenv), reverse=True)]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:  # a pyenv shim may not run
            return candidate
    return None


def compile_command(python: str, folders: Sequence[Path]) -> list[str]:
    return [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash", *map(str, folders)]


def compile_layers(folders: Sequence[Path], python: str | None) -> int:
    """Compile ``folders`` with the runtime's interpreter; without one, say so (the layers then ship
    source only, compiled at every cold start)."""
    if python is None:
        print(f"no python{PYTHON_VERSION} found: the layers ship without bytecode (slower cold starts)")
        return 0
    command = compile_command(python, [f for f in folders if f.is_dir()])
    print(" ".join(command))
    return subprocess.run(command, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requirements", type=Path, default=DEPS_DIR / "requirements.txt")
    parser.add_argument("--target", type=Path, default=DEPS_DIR / "python")
    parser.add_argument("--python-version", default=PYTHON_VERSION)
    parser.add_argument("--platform", default=PLATFORM)
    parser.add_argument("--dry-run", action="store_true", help="print the pip command and exit")
    parser.add_argument("--python", help=f"the python{PYTHON_VERSION} that compiles the layers' bytecode")
    parser.add_argument("--bytecode-only", action="store_true", help="only compile the layers (no pip install)")
    args = parser.parse_args(argv)

    python = args.python or runtime_python(args.python_version)
    if args.bytecode_only:
        return compile_layers([args.target, KASSA_DIR], python)
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
    compiled = compile_layers([args.target, KASSA_DIR], python)
    if compiled != 0:
        return compiled
    print(f"dependency layer ready in {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
