"""README's PromQL for uptime over 30 days, evaluated by Prometheus's own engine (promtool's unit tests) on
counters shaped as the daemon exports them: it is the share of judged runs that reached the target, a
counter reset (a restart) does not break it, and the prober's own failures count on neither side."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.helpers import ROOT, require


def readme_expression() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```promql\n(.*?)```", text, re.S)
    assert block, "README has no promql block"
    lines = [line for line in block.group(1).splitlines() if not line.lstrip().startswith("#")]
    return " ".join(line.strip() for line in lines)


def test_the_30_day_uptime_expression(tmp_path: Path) -> None:
    expression = readme_expression()
    hours = 24 * 30
    # one sample an hour for 30 days. api: 100 runs an hour, 1 of them refused, 2 internal errors an hour,
    # restarted (counters back to 0) halfway. db: never reached.
    half = hours // 2
    series = [
        {"series": 'prober_probes_total{target="api",kind="http"}', "values": f"0+100x{half} 0+100x{half}"},
        {
            "series": 'prober_probe_failures_total{target="api",kind="http",reason="refused"}',
            "values": f"0+1x{half} 0+1x{half}",
        },
        {
            "series": 'prober_probe_failures_total{target="api",kind="http",reason="internal"}',
            "values": f"0+2x{half} 0+2x{half}",
        },
        {"series": 'prober_internal_errors_total{target="api",kind="http"}', "values": f"0+2x{half} 0+2x{half}"},
        {"series": 'prober_probes_total{target="db",kind="postgres"}', "values": f"0+60x{hours}"},
        {
            "series": 'prober_probe_failures_total{target="db",kind="postgres",reason="timeout"}',
            "values": f"0+60x{hours}",
        },
        {"series": 'prober_internal_errors_total{target="db",kind="postgres"}', "values": f"0x{hours}"},
    ]
    # 97 judged runs an hour, 96 of them reached: 96/97
    tests = {
        "rule_files": [],
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": "1h",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": f"round({expression}, 0.001)",  # increase() extrapolates at the edges
                        "eval_time": f"{hours}h",
                        "exp_samples": [
                            {"labels": '{target="api"}', "value": round(96 / 97, 3)},
                            {"labels": '{target="db"}', "value": 0},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "uptime.test.yml"
    path.write_text(yaml.safe_dump(tests))
    done = subprocess.run(
        [require("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
