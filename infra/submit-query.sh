#!/usr/bin/env bash
# Run one SQL query as a Ray Job on a running cluster.
#   RAY_ADDRESS=http://<head>:8265 infra/submit-query.sh "select count(*) from logs"
set -euo pipefail
query=${1:?usage: submit-query.sh "SQL"}
ray job submit \
  --runtime-env-json '{"pip": ["petrel[s3]"], "env_vars": {"PETREL_WAREHOUSE": "'"${PETREL_WAREHOUSE:-s3://petrel-warehouse/prod}"'"}}' \
  -- petrel sql "$query" --format csv
