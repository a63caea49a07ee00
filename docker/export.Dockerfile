# ZooServe export image: PyTorch (CPU build) -> ONNX into the store volume at /models.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The CPU build of torch (a tenth of the CUDA build's size), pinned to the version the zoo is built on.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.14.1" "torchvision==0.29.1"
COPY requirements/serve-cpu.txt requirements/export.txt requirements/
RUN pip install --no-deps --requirement requirements/serve-cpu.txt --requirement requirements/export.txt
COPY pyproject.toml README.md ./
COPY service ./service
COPY export ./export
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --create-home zoo \
    && mkdir /models && chown zoo /models

USER 10001
ENV ZOOSERVE_STORE=/models
ENTRYPOINT ["python", "-m", "export"]
CMD ["build", "lenet5_digits", "resnet18", "mobilenet_v2"]
