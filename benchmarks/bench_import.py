"""Import cost: what the plugin adds to a pytest run.

``python -m pytest`` on an empty test file, in a fresh directory (no ini file,
no conftest), with the plugin (it loads through its ``pytest11`` entry point)
and with ``-p no:sessionstate``, in interleaved rounds; the difference of the
medians is what every pytest run in an environment with the package installed
pays.  Then ``python -X importtime`` of both runs: the modules that only the
run with the plugin imports, and their import time (self, summed), biggest
first.  That list says *what* costs, the wall times say *how much*.

Goal (issue #3): the plugin adds at most 30 ms.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    Table,
    header,
    interleaved_order,
    make_parser,
    median,
    ms,
    rounds_of,
    verdict,
)

_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def pytest_command(with_plugin: bool, test_file: Path) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)]
    if not with_plugin:
        command[3:3] = ["-p", "no:sessionstate"]
    return command


def run_once(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 5):  # 5: no tests collected
        output = result.stdout + result.stderr
        raise RuntimeError(f"{command} failed ({result.returncode}):\n{output}")
    return elapsed


def import_times(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, int]:
    """Module -> self import time in microseconds, from ``-X importtime``."""
    result = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    times: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            times[match.group(4)] = int(match.group(1))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], rounds=21, quick_rounds=5)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-import-", dir=args.dir))
    test_file = workdir / "test_empty.py"
    test_file.write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    header("Import cost: pytest on an empty test file, with and without the plugin", args)
    variants = {"without": False, "with": True}
    for plugin in variants.values():  # warm the bytecode caches and the page cache
        run_once(pytest_command(plugin, test_file), workdir, env)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds_of(args)):
        for name in interleaved_order(list(variants), index):
            times[name].append(run_once(pytest_command(variants[name], test_file), workdir, env))
    without, with_ = median(times["without"]), median(times["with"])
    # Paired differences cancel slow drift even better than the medians do.
    pairs = [w - wo for w, wo in zip(times["with"], times["without"], strict=True)]
    table = Table(["pytest run", "wall time (median)", "added by the plugin"])
    table.add("-p no:sessionstate (baseline)", ms(without), "-")
    table.add("with the plugin", ms(with_), ms(with_ - without))
    print()
    print(f"Medians over {rounds_of(args)} interleaved runs each:")
    print(table.render(args.format))
    print(f"median of the paired differences: {ms(median(pairs))}")

    base_imports = import_times(pytest_command(False, test_file), workdir, env)
    plugin_imports = import_times(pytest_command(True, test_file), workdir, env)
    only = {m: t for m, t in plugin_imports.items() if m not in base_imports}
    print()
    print(
        f"-X importtime: {len(only)} modules imported only with the plugin, "
        f"{sum(only.values()) / 1000:.1f} ms of import time (self, summed):"
    )
    for module, micros in sorted(only.items(), key=lambda item: -item[1])[:12]:
        print(f"  {micros / 1000:7.2f} ms  {module}")
    heavy = [m for m in only if m.split(".")[0] in {"hypothesis", "freezegun", "time_machine"}]
    print(f"hypothesis/freezegun imported by the plugin: {heavy or 'no'}")
    print()
    added = with_ - without
    print(f"goal plugin adds <= 30 ms: {added * 1000:.1f} ms {verdict(added <= 0.030)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
