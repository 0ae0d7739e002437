# The scheduler in a container: a cycle at start, then every EXPORT_PERIOD_HOURS.
# (Or with compose: docker compose -f deploy/docker-compose.yml up -d --build)
#
#   mkdir -p historical_exports && sudo chown 10001:10001 historical_exports
#   docker build -t crypto-data-exporter .
#   docker run -d --name crypto-scheduler --restart unless-stopped --stop-timeout 60 \
#     --env-file .env -e EXPORT_DIR=/app/historical_exports \
#     -v "$(pwd)/historical_exports:/app/historical_exports" \
#     crypto-data-exporter
#   docker stop crypto-scheduler   # SIGTERM: the current symbol finishes (up to 60 s), files stay whole
#
# The bind-mounted export folder must be writable by UID 10001 (the chown above).
# The base image is pinned by digest, so a rebuild gets the same OS and Python. To move to a
# newer patch release: docker buildx imagetools inspect python:3.11-slim (the "Digest:" line).
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a fixed UID, so volume ownership is predictable.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
# And the extras [s3], [gcs], [azure]: a DATASET_URL in any of the three clouds works in the image.
RUN pip install --no-cache-dir -r requirements.txt \
    "boto3>=1.36" "google-cloud-storage>=3.0" "azure-storage-blob>=12.19"

# The package, installed as a user installs it (pip install .): the console commands
# scheduled-data-manager, data-export-service, file-manager and export-historical-data.
# The code stays owned by root (read-only for the app user); only the export folder is writable.
COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && mkdir -p /app/historical_exports \
    && chown 10001:10001 /app/historical_exports \
    && chmod 0750 /app/historical_exports

USER 10001:10001
VOLUME /app/historical_exports

# Health: --health exits 0 healthy, 1 degraded, 2 down. Docker reserves exit 2,
# so both problems are reported to it as 1 (unhealthy); the reason is in the output.
HEALTHCHECK --interval=5m --timeout=30s --start-period=2m \
    CMD ["sh", "-c", "scheduled-data-manager --health || exit 1"]

# The scheduler handles SIGTERM itself: it finishes the current symbol and exits 0.
STOPSIGNAL SIGTERM
CMD ["scheduled-data-manager"]
