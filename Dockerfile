# One image for every taskmesh process; the command picks the role:
#   docker run IMAGE manager          docker run IMAGE worker --name w --skill 5
# Options come from TASKMESH_* environment variables (see docker-compose.yml).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY manager ./manager
COPY worker ./worker
RUN pip install --no-cache-dir . && useradd --system --uid 10001 taskmesh \
    && mkdir /data && chown taskmesh /data
USER taskmesh
WORKDIR /data
ENTRYPOINT ["taskmesh"]
CMD ["--help"]
