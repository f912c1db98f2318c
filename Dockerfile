# The image the Helm charts run: `grid domain start`, `grid network start`, `grid worker start`.
#   docker build -t REGISTRY/grid:0.1.0 .     (the tag is the charts' appVersion)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# PyTorch first, CPU-only and exactly pinned: from the default index it would pull gigabytes of
# CUDA libraries. Its own layer, so a change to Grid's code does not download it again.
# GPU workers: build a second tag with a CUDA wheel index, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t REGISTRY/grid:0.1.0-cuda .
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX}

WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY network network
COPY worker worker
COPY registry registry
COPY grid_cli grid_cli
COPY grid_common grid_common
# The node extra: Flask, gunicorn, the database drivers, metrics and DP-SGD.
RUN pip install '.[node]' && rm -rf /app/build

# The numeric user the charts' securityContext names; /data and /work are mounted volumes.
RUN useradd --uid 10001 --user-group --home-dir /tmp --no-create-home grid \
    && mkdir -p /data /work && chown grid:grid /data /work
USER 10001
WORKDIR /data
EXPOSE 8000
ENTRYPOINT ["grid"]
CMD ["--help"]
