# syntax=docker/dockerfile:1
# Polyskill images, from one multi-stage file (CPU by default; CUDA with --build-arg DEVICE=cuda).
#
#   docker build --target client  -t polyskill-client .   # thin client + `polyskill-drive` (no torch)
#   docker build --target server  -t polyskill-server .   # `polyskill serve` (+ drive, models)
#   docker build --target trainer -t polyskill-trainer .  # `polyskill train` (+ git for run tags)
#   docker build --target server --build-arg DEVICE=cuda -t polyskill-server:cuda .
#
#   docker run --rm -p 50051:50051 -v "$PWD/runs:/runs:ro" polyskill-server \
#       --checkpoint /runs/smoke/checkpoints/latest
#   docker run --rm --gpus all -p 50051:50051 polyskill-server:cuda --model models:/polyskill@champion
#
# NOTE: torch is installed first, from the PyTorch index for DEVICE (a bare `torch` from PyPI pulls
# the ~5 GB CUDA build even for CPU images); the project's torch range is then already satisfied.
# The CUDA wheels bundle the CUDA runtime: the host needs only the NVIDIA driver and the container
# toolkit. onnxruntime (cpu) and onnxruntime-gpu (cuda) are mutually exclusive extras.

ARG PYTHON_VERSION=3.11
ARG DEVICE=cpu

# ---- base: slim Python with an empty virtual environment --------------------------------------
FROM python:${PYTHON_VERSION}-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# ---- client: grpcio + protobuf + numpy (+ gymnasium for drive); what a robot needs ------------
FROM base AS client
COPY client/ /src/client/
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "/src/client[gym]" && rm -rf /src/client
RUN useradd --create-home --uid 10001 polyskill
USER 10001
ENTRYPOINT ["polyskill-drive"]
CMD ["--help"]

# ---- torch for the chosen device ----------------------------------------------------------------
FROM base AS torch-cpu
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

FROM base AS torch-cuda
ARG TORCH_VERSION=2.13.0
ARG CUDA_INDEX=cu126
RUN pip install --no-cache-dir --index-url "https://download.pytorch.org/whl/${CUDA_INDEX}" \
        "torch==${TORCH_VERSION}"

# ---- build: the project into the venv (order as in the Makefile: torch, client, project) ------
# hadolint ignore=DL3006
FROM torch-${DEVICE} AS build
ARG DEVICE
COPY client/ /src/client/
# hadolint ignore=DL3013
RUN pip install --no-cache-dir /src/client
COPY pyproject.toml README.md /src/
COPY polyskill/ /src/polyskill/
COPY agent/ /src/agent/
COPY trainer/ /src/trainer/
COPY server/ /src/server/
COPY benchmarks/ /src/benchmarks/
# hadolint ignore=DL3013
RUN if [ "$DEVICE" = "cuda" ]; then extra=gpu; else extra=cpu; fi \
    && pip install --no-cache-dir "/src[${extra}]"

# ---- runtime base: slim Python + the built venv, non-root ---------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MLFLOW_TRACKING_URI=sqlite:////data/mlflow.db
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 polyskill \
    && mkdir -p /data /runs && chown polyskill /data /runs
WORKDIR /data

# ---- server: `polyskill serve` on 0.0.0.0:50051 (metrics on 9090 when --metrics-port 9090) -----
FROM runtime AS server
USER 10001
EXPOSE 50051 9090
ENV POLYSKILL_HOST=0.0.0.0 \
    POLYSKILL_PORT=50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import grpc, sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; c = grpc.insecure_channel('127.0.0.1:50051'); sys.exit(0 if g.HealthStub(c).Check(h.HealthCheckRequest(), timeout=2).status == 1 else 1)"]
ENTRYPOINT ["polyskill", "serve"]

# ---- trainer: `polyskill train` writing to /runs and the MLflow store in /data -----------------
FROM runtime AS trainer
# git: the trainer tags each registered version with the source revision when one is mounted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
USER 10001
VOLUME ["/runs", "/data"]
ENTRYPOINT ["polyskill", "train"]
CMD ["--preset", "smoke", "--run-dir", "/runs/smoke"]
