FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY agents ./agents
COPY schemas ./schemas
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["encore", "worker", "--loglevel", "info"]
