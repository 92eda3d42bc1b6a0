#!/usr/bin/env bash
# Run one SQL query as a Ray Job on a running cluster, shipping this checkout
# of Petrel with the job (Ray's working_dir): the package index's "petrel" is
# an unrelated project, and a cluster should run the code you have.
#   RAY_ADDRESS=http://<head>:8265 infra/submit-query.sh "select count(*) from logs"
# PETREL_WAREHOUSE  the warehouse the job reads (default s3://petrel-warehouse/prod)
# PETREL_JOB_PIP    extra packages the cluster's Python needs, space-separated
#                   (default: Petrel's own dependencies; empty when the image has them)
set -euo pipefail
query=${1:?usage: submit-query.sh "SQL"}
project=$(cd "$(dirname "$0")/.." && pwd)
warehouse=${PETREL_WAREHOUSE:-s3://petrel-warehouse/prod}
pip=${PETREL_JOB_PIP-"sqlglot>=25 fsspec>=2023.6 s3fs>=2023.6"}
runtime_env=$(python3 - "$project" "$warehouse" "$pip" <<'PY'
import json, sys
project, warehouse, pip = sys.argv[1:4]
env = {
    "working_dir": project,
    "excludes": [".git", ".venv*", "warehouse", "benchmarks/results", "**/__pycache__", "*.ipynb"],
    "env_vars": {"PETREL_WAREHOUSE": warehouse},
}
if pip.split():
    env["pip"] = pip.split()
print(json.dumps(env))
PY
)
ray job submit --runtime-env-json "$runtime_env" -- python -m engine.cli sql "$query" --format csv
