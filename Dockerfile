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
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SECIRBOT_CONFIG=/etc/secirbot/secirbot.yaml \
    SECIRBOT_STORE_PATH=/var/lib/secirbot/secirbot.sqlite3 \
    SECIRBOT_RULES=/etc/secirbot/rules.yaml \
    SECIRBOT_TEMPLATES=/opt/secirbot/templates

WORKDIR /opt/secirbot
COPY pyproject.toml README.md ./
COPY secirbot ./secirbot
COPY templates ./templates
COPY rules.yaml ./rules.yaml.example
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/secirbot --create-home secirbot \
    && mkdir -p /etc/secirbot && chown secirbot /var/lib/secirbot

USER secirbot
VOLUME ["/var/lib/secirbot"]

HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["secirbot", "check", "--health"]

ENTRYPOINT ["secirbot", "--log-format", "json"]
CMD ["run"]
