"""``make bench-imports``: how long each function's ``import handler`` takes in a fresh interpreter
(the bulk of a Python Lambda's cold start), median of several runs, over a bare interpreter.

    python -m kassa_local.coldstart [--runs 9] [--layer DIR] [--json FILE] [function ...]

Two ways the layers can reach Lambda, measured side by side:

* ``source``: no bytecode at all — what Lambda ran before ``make layer`` compiled the layers
  (``/opt`` is read-only, so nothing is ever cached there): every module of kassa *and* of its
  dependencies is compiled at each cold start. Reproduced with an empty ``PYTHONPYCACHEPREFIX``.
* ``bytecode``: the layers as ``make layer`` builds them — kassa compiled to checked-hash ``.pyc``
  (a copy of ``--layer`` in a temporary folder) and the dependencies with their bytecode.

Figures are for this machine's interpreter; the timing is taken inside the child process around
``import handler`` (wall and CPU), so interpreter start-up is not in it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra import wiring

REPO = Path(__file__).resolve().parents[1]
LAYER = REPO / "layers" / "kassa" / "python"
MODES = ("source", "bytecode")

_PROBE = (
    "import sys, time\n"
    "sys.path[:0] = [{function!r}, {layer!r}]\n"
    "w, c = time.perf_counter(), time.process_time()\n"
    "import handler\n"
    "print((time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000)\n"
)


def _env(mode: str, cache_prefix: str) -> dict[str, str]:
    env = {**wiring.COMMON_ENV, "AWS_DEFAULT_REGION": "us-east-1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing measured writes bytecode: each run starts alike
    if mode == "source":
        env["PYTHONPYCACHEPREFIX"] = cache_prefix  # an empty folder: no .pyc is found anywhere
    return env


def import_ms(function: str, layer: Path, mode: str, runs: int, cache_prefix: str) -> dict[str, float]:
    """Median wall and CPU milliseconds of ``import handler`` of ``functions/<function>``."""
    code = _PROBE.format(function=str(REPO / "functions" / function), layer=str(layer))
    walls, cpus = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            env=_env(mode, cache_prefix),
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
        ).stdout.split()
        walls.append(float(out[-2]))
        cpus.append(float(out[-1]))
    return {"wall_ms": round(statistics.median(walls), 1), "cpu_ms": round(statistics.median(cpus), 1)}


def compiled_copy(layer: Path, into: Path) -> Path:
    """A copy of the kassa layer compiled as ``make layer`` compiles it (checked-hash bytecode)."""
    target = into / "python"
    shutil.copytree(layer, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash", str(target)],
        check=True,
        capture_output=True,
    )
    return target


def measure(functions: Sequence[str], layer: Path = LAYER, runs: int = 9) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="kassa-coldstart-") as tmp:
        empty = Path(tmp) / "no-pycache"
        empty.mkdir()
        source = Path(tmp) / "source"
        shutil.copytree(layer, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        layers = {"source": source, "bytecode": compiled_copy(layer, Path(tmp))}
        return {fn: {mode: import_ms(fn, layers[mode], mode, runs, str(empty)) for mode in MODES} for fn in functions}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("functions", nargs="*", help="functions/<name> (default: every function)")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--layer", type=Path, default=LAYER, help="the kassa layer's python/ folder to measure")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    functions = args.functions or [fn.name for fn in wiring.FUNCTIONS]
    figures = measure(functions, args.layer, args.runs)
    print(f"import handler, median of {args.runs} fresh interpreters (ms, wall / CPU)")
    print(f"{'function':<20}{'source':>18}{'bytecode':>18}")
    for fn, by_mode in figures.items():
        cells = "".join(f"{m['wall_ms']:>10.0f} / {m['cpu_ms']:<5.0f}" for m in by_mode.values())
        print(f"{fn:<20}{cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
