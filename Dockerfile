# One image for every taskmesh process; the command picks the role:
#   docker run -p 127.0.0.1:8888:8888 -p 127.0.0.1:8889:8889 taskmesh:local     a manager
#   docker run -e TASKMESH_HOST=HOST taskmesh:local worker --skill 5             a worker
# Options come from TASKMESH_* variables (`docker run IMAGE manager --help` lists
# them); docker-compose.yml runs a whole cluster. `.ci/compose/test.sh` builds and
# tests it (`make test-compose`).
#
# The manager keeps its journal in /data, owned by the image's user (uid 10001).
# A named volume starts with that owner. A bind-mounted directory keeps its host
# owner, so either give it to uid 10001 (`chown 10001 DIR`) or run the container
# as the directory's owner (`--user "$(id -u):$(id -g)"`): the image works under
# any uid.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: the wheels, built once -------------------------------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# Dependencies first, from exact pins, into the venv the final stage copies. A
# change to the source reuses this layer (and the final image's layer made from it).
COPY docker/requirements.txt docker/build-requirements.txt docker/
RUN python3 -m pip wheel --quiet --no-deps --wheel-dir /wheels -r docker/requirements.txt \
    && python3 -m pip wheel --quiet --no-deps --wheel-dir /build-wheels \
        -r docker/build-requirements.txt \
    && python3 -m venv --without-pip /opt/taskmesh \
    && python3 -m pip --python /opt/taskmesh/bin/python install --quiet --no-index \
        --find-links /wheels -r docker/requirements.txt

# The project: a wheel built offline, installed under /stage with the venv's layout
# (so the final stage adds it as a small layer of its own), after checking offline
# that the pinned dependencies satisfy it.
COPY . .
RUN python3 -m pip wheel --quiet --no-deps --no-index --find-links /build-wheels \
        --wheel-dir /wheels . \
    && python3 -m pip --python /opt/taskmesh/bin/python install --quiet --dry-run \
        --no-index --find-links /wheels 'taskmesh[metrics]' \
    && python3 -m pip --python /opt/taskmesh/bin/python install --quiet --no-deps \
        --no-index --no-warn-script-location --root /stage /wheels/taskmesh-*.whl

# ---- runtime ------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="taskmesh" \
      org.opencontainers.image.description="Distributed task manager over ZeroMQ: one image, the command picks manager or worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A regular (not --system) account: a uid above SYS_UID_MAX draws no useradd warning.
RUN groupadd --gid 10001 taskmesh \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data \
        --shell /usr/sbin/nologin taskmesh \
    && mkdir /data /keys && chown taskmesh:taskmesh /data /keys

COPY --from=build /opt/taskmesh /opt/taskmesh
COPY --from=build /stage/opt/taskmesh /opt/taskmesh

# The manager binds every interface inside the container (TASKMESH_BIND), while
# TASKMESH_HOST, the manager's address for workers and the CLI, stays 127.0.0.1
# (the healthcheck asks the manager in its own container). The PUB port is fixed
# so it can be published: a worker connects to the port number the manager names.
ENV PATH=/opt/taskmesh/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TASKMESH_BIND=0.0.0.0 \
    TASKMESH_PUB_PORT=8889 \
    TASKMESH_DB=/data/taskmesh.db
USER taskmesh
WORKDIR /data
EXPOSE 8888 8889 9100
# Healthy once the manager answers (workers are not required: they wait for a
# healthy manager). In a worker's container the same check asks its manager.
HEALTHCHECK --interval=10s --timeout=10s --start-period=30s --retries=3 \
    CMD ["taskmesh", "status", "--check", "--min-workers", "0", "--log-level", "ERROR"]
ENTRYPOINT ["taskmesh"]
CMD ["manager"]
