# secirbot in a small container: slim Python, a non-root user, state on a volume, config and rules
# mounted read-only, secrets from the environment (SECIRBOT_IMAP_PASSWORD, SECIRBOT_SMTP_PASSWORD,
# SECIRBOT_MAILMAN_REST_PASSWORD).
#
#   docker build -t secirbot .
#   docker run -d --name secirbot \
#     -v secirbot-state:/var/lib/secirbot \
#     -v /etc/secirbot:/etc/secirbot:ro \
#     -e SECIRBOT_IMAP_PASSWORD=... -e SECIRBOT_SMTP_PASSWORD=... \
#     secirbot
#
# /etc/secirbot/secirbot.yaml must set store.path to /var/lib/secirbot/secirbot.sqlite3 (or leave it to
# SECIRBOT_STORE_PATH below) and may point rules/templates at files in /etc/secirbot.
#
# Reproducible: the Python packages come from requirements.lock, every one by version and hash (rebuild it
# as README.md "Docker" says); the base image must be pinned by digest, which no tag alone is. The digest was
# not known where this file was written, so PYTHON_IMAGE names the tag until someone pins it:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> -t secirbot .
# or write that into the default below (README.md "Docker": how to read the digest).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SECIRBOT_CONFIG=/etc/secirbot/secirbot.yaml \
    SECIRBOT_STORE_PATH=/var/lib/secirbot/secirbot.sqlite3 \
    SECIRBOT_RULES=/etc/secirbot/rules.yaml \
    SECIRBOT_TEMPLATES=/opt/secirbot/templates

WORKDIR /opt/secirbot
# The locked dependencies first, in their own layer (they change less often than the code), then the
# project itself without resolving anything again: what runs is exactly what the lock names.
COPY requirements.lock ./
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE rules.yaml ./
COPY secirbot ./secirbot
COPY templates ./templates
COPY rules.yaml ./rules.yaml.example
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps . \
    && pip check \
    && useradd --system --uid 10001 --home-dir /var/lib/secirbot --create-home secirbot \
    && mkdir -p /etc/secirbot && chown secirbot /var/lib/secirbot

USER secirbot
VOLUME ["/var/lib/secirbot"]

HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["secirbot", "check", "--health"]

ENTRYPOINT ["secirbot", "--log-format", "json"]
CMD ["run"]
