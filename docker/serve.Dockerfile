# ZooServe service image, CPU: onnxruntime (CPU build), no torch. Models come from a volume at /models.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Pinned, resolved dependency set (requirements/serve-cpu.txt), then the package itself without resolution.
COPY requirements/serve-cpu.txt requirements/
RUN pip install --no-deps --requirement requirements/serve-cpu.txt
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home zoo

USER 10001
ENV ZOOSERVE_HOST=0.0.0.0 \
    ZOOSERVE_PORT=8000 \
    ZOOSERVE_STORE=/models
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
