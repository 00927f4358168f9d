# The lensguard image: `lensguard serve` by default; the compose file also runs `worker` and `init` from it.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
COPY requirements.lock pyproject.toml README.md ./
RUN uv pip install --system --no-cache --compile-bytecode -r requirements.lock
COPY lensguard lensguard
COPY backend backend
COPY training training
COPY serving serving
COPY labelstudio labelstudio
COPY settings settings
COPY models models
COPY benchmarks benchmarks
COPY labeling_config labeling_config
RUN uv pip install --system --no-cache --no-deps -e .
# Runs as an unprivileged user. The folders that compose mounts named volumes on belong to it, so a fresh
# volume does too (Docker copies the image folder's owner into an empty named volume).
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin lensguard \
    && mkdir -p /data /run/lensguard \
    && chown lensguard:lensguard /data /run/lensguard \
    && chmod 700 /run/lensguard
USER lensguard
ENV LENSGUARD_DATA_DIR=/data HF_HOME=/data/hf
EXPOSE 9090
HEALTHCHECK --interval=15s --timeout=10s --start-period=180s --retries=5 CMD ["lensguard", "health"]
CMD ["lensguard", "serve"]
