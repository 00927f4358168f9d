FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
COPY requirements.lock pyproject.toml README.md ./
RUN uv pip install --system --no-cache -r requirements.lock
COPY backend backend
COPY models models
COPY training training
COPY labeling_config labeling_config
RUN uv pip install --system --no-cache --no-deps -e .
EXPOSE 9090
CMD ["lensguard", "serve"]
