"""Why the postgres kind reads libpq's keyword/value DSNs (``host=db port=5432 dbname=app``) with a few lines of
its own instead of a library: the only parser on PyPI is psycopg's ``conninfo_to_dict``, which calls libpq.

    .venv/bin/pip install -r bench/requirements.txt && .venv/bin/python bench/dsn_choice.py

Prints, for each, what importing it adds to a fresh interpreter that has loaded the config loader (time, RSS),
and whether both read a set of libpq examples (quotes, escapes, spaces around '=') to the same parameters.
"""

from __future__ import annotations

import subprocess
import sys

EXAMPLES = [
    "host=db port=5432 dbname=app user=app password=secret",
    "host=/var/run/postgresql dbname=app user=app",
    "host = db  port= 5432 dbname =app",
    r"host=db user=app password='p w\'x' application_name='my app'",
    r"host=db password=a\ b\\c sslmode=verify-full sslrootcert=/etc/ssl/ca.pem",
]
PROBE = """
import resource, sys, time
import prober.config  # what a daemon has loaded anyway: the cost measured is what the parser adds to it
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
exec(sys.argv[1])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(round((time.perf_counter() - t0) * 1000, 1), round((rss - r0) / 1024, 1))
"""
IMPORTS = {
    "psycopg.conninfo (psycopg[binary], libpq)": "from psycopg.conninfo import conninfo_to_dict",
    "prober's own (prober.probes.postgres)": "from prober.probes.postgres import _keyword_values",
}


def main() -> None:
    print("| parser | import ms | import RSS MB |\n|---|---|---|")
    for name, statement in IMPORTS.items():
        done = subprocess.run([sys.executable, "-c", PROBE, statement], capture_output=True, text=True, check=True)
        print(f"| {name} | {' | '.join(done.stdout.split())} |")
    from psycopg.conninfo import conninfo_to_dict

    from prober.probes.postgres import _keyword_values

    same = all(dict(_keyword_values(text)) == conninfo_to_dict(text) for text in EXAMPLES)
    print(f"\nthe same parameters for all {len(EXAMPLES)} examples: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
