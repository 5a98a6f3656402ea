# One image for every ventureloop service of compose.yaml (and the user deployments of dagster's Helm
# chart, docs/deploy.md): the locked environment, the code, and a dbt manifest parsed for PostgreSQL.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    VENTURELOOP_HOME=/var/lib/ventureloop \
    DAGSTER_HOME=/var/lib/ventureloop/dagster

# The uv version the Makefile uses, from PyPI.
RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /app
# Dependencies first, from the lock exactly (--frozen: never re-resolve), so a code change does not
# reinstall them; no dev group (pytest, ruff) in a runtime image.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .
RUN uv sync --frozen --no-dev

# The marts code location reads dbt_project/target/manifest.json. `dbt parse` reads the profile of
# the warehouse WAREHOUSE_URL names but never connects: parse it for the PostgreSQL target the
# container path runs on (the host and password here are not used and not kept).
ARG PARSE_WAREHOUSE_URL=postgresql://ventureloop@postgres:5432/warehouse
RUN WAREHOUSE_URL=$PARSE_WAREHOUSE_URL dagster-dbt project prepare-and-package --file assets/ledger_marts/project.py

RUN mkdir -p $DAGSTER_HOME
EXPOSE 3000 4000
# The code location server by default; compose.yaml and the Helm values choose each service's command.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "orchestration.definitions", "--location-name", "ventureloop"]
