"""Which CEL library evaluates the conditions (``degraded_if``/``unhealthy_if``): measured, not assumed.

    .venv/bin/python bench/cel_choice.py            # about 10 s

Candidates (both on PyPI): ``common-expression-language`` (Rust, the ``cel`` crate behind PyO3) and
``cel-python`` (pure Python, ``celpy``). For each: the cost of importing it in a fresh interpreter (time,
RSS), and the CPU per evaluation of a compiled two-clause condition over a realistic health body, including
the conversion of the input, as the prober does it on every run. The ``cel`` package's ``__init__`` also
imports its command-line interface (prompt_toolkit, rich, typer); the prober loads only its compiled
extension module (prober/conditions.py), measured separately here.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

EXPRESSION = "body.checks.memory.heapUsedRatio > 0.85 && latency_ms > 300"


def health_body(heap_used_ratio: float) -> dict[str, Any]:
    """A NestJS-style health body (@nestjs/terminus with a memory indicator), as the benchmarks probe it."""
    return {
        "status": "ok",
        "timestamp": "2026-12-03T10:00:00Z",
        "uptime": 86400,
        "version": "2.4.1",
        "checks": {
            "database": {"status": "ok", "responseTime": 3},
            "redis": {"status": "ok", "responseTime": 1},
            "minio": {"status": "ok", "responseTime": 12},
            "memory": {
                "status": "ok",
                "heapUsed": 180_000_000,
                "heapTotal": 200_000_000,
                "heapUsedRatio": heap_used_ratio,
            },
        },
    }


BODY = health_body(heap_used_ratio=0.9)  # the condition's first half holds
IMPORTS = {
    "cel (package, as `import cel`)": "import cel",
    "cel (extension only, as the prober loads it)": "from prober.conditions import cel_module; cel_module()",
    "celpy (cel-python)": "import celpy",
}
PROBE = """
import resource, sys, time
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
exec(sys.argv[1])
print((time.perf_counter() - t0) * 1000, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024)
"""


def import_cost(statement: str) -> tuple[float, float]:
    runs = [subprocess.run([sys.executable, "-c", PROBE, statement], capture_output=True, text=True, check=True)]
    runs += [subprocess.run([sys.executable, "-c", PROBE, statement], capture_output=True, text=True, check=True)]
    values = [tuple(map(float, run.stdout.split())) for run in runs]
    return min(v[0] for v in values), min(v[1] for v in values)


def per_evaluation(evaluate: Any, count: int) -> float:
    """Median of five batches, microseconds of CPU per evaluation."""
    batches = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(count):
            evaluate()
        batches.append((time.process_time() - started) / count * 1e6)
    return statistics.median(batches)


def rust() -> float:
    from prober.conditions import cel_module

    cel = cel_module()
    program = cel.compile(EXPRESSION)
    body = json.loads(json.dumps(BODY))

    def evaluate() -> None:
        assert program.execute(cel.Context({"body": body, "latency_ms": 301.5})) is True

    return per_evaluation(evaluate, 5000)


def python() -> float:
    import celpy

    environment = celpy.Environment()
    program = environment.program(environment.compile(EXPRESSION))
    body = json.loads(json.dumps(BODY))

    def evaluate() -> None:
        activation = {"body": celpy.json_to_cel(body), "latency_ms": celpy.celtypes.DoubleType(301.5)}
        assert bool(program.evaluate(activation)) is True

    return per_evaluation(evaluate, 300)


def main() -> None:
    print(f"condition: {EXPRESSION}\nbody: a NestJS-style health body of {len(json.dumps(BODY))} bytes\n")
    print("| library | import ms | import RSS MB |")
    print("|---|---|---|")
    for name, statement in IMPORTS.items():
        milliseconds, megabytes = import_cost(statement)
        print(f"| {name} | {milliseconds:.0f} | {megabytes:.1f} |")
    fast, slow = rust(), python()
    print("\n| library | CPU per evaluation, incl. converting the input (median of 5 batches) |")
    print("|---|---|")
    print(f"| common-expression-language (Rust) | {fast:.1f} us |")
    print(f"| cel-python | {slow:.1f} us |")
    print(f"\nratio: cel-python costs {slow / fast:.0f}x the Rust library per evaluation")


if __name__ == "__main__":
    main()
