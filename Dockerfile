# The `stream` CLI: `stream worker` by default, `stream topics create` as a one-shot
# (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml README.md ./
COPY stream/ stream/
COPY topics/ topics/
COPY loadtest/ loadtest/

# Editable install: stream.contracts.topics.TOPICS_DIR resolves to /app/topics, next to the
# package, which is where the topic specs and their schemas are.
RUN pip install --no-cache-dir -e . \
    && useradd --system --create-home --uid 10001 --user-group stream \
    && mkdir -p /data /tokens \
    && chown stream:stream /data /tokens

USER stream

ENV STREAM_DATA_DIR=/data

EXPOSE 6066

ENTRYPOINT []
CMD ["stream", "worker"]
