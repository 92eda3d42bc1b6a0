"""A Ray job: summarise a table of the warehouse and print the report.

Submit it to a cluster with this checkout as the job's working directory:

    RAY_ADDRESS=http://<head>:8265 ray job submit --working-dir . \\
        --runtime-env-json '{"env_vars": {"PETREL_WAREHOUSE": "s3://bucket/wh"}}' \\
        -- python examples/ray_job_report.py requests

Inside a job ``petrel.connect`` attaches to the job's cluster (Ray sets
``RAY_ADDRESS`` for the entrypoint), so the query runs on the cluster's workers.
"""

from __future__ import annotations

import argparse
import os
import sys

import petrel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table")
    parser.add_argument("--warehouse", default=os.environ.get("PETREL_WAREHOUSE", "./warehouse"))
    parser.add_argument("--group-by", default="service")
    args = parser.parse_args(argv)
    with petrel.connect(args.warehouse, maintenance=False) as db:
        try:
            report = db.sql(f'SELECT "{args.group_by}" AS key, count(*) AS events FROM "{args.table}" '
                            f'GROUP BY key ORDER BY events DESC, key')
        except petrel.PetrelError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        total = sum(report.column("events").to_pylist())
        print(f"report of {args.table}: {total} events")
        for key, events in zip(report.column("key").to_pylist(), report.column("events").to_pylist()):
            print(f"{key}\t{events}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
