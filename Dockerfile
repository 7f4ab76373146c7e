# syntax=docker/dockerfile:1
# One image for all four services; the Deployment chooses the module to run
# (python -m services.<name>.main), the migration Job `python -m shared.migrate <name>`.
#
# The base is pinned by digest (python:3.11-slim, Debian bookworm); bump tag and digest together.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# ---- build: resolve the locked dependencies into /opt/venv and compile all bytecode ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_FROZEN=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --no-dev --no-install-project --no-cache
COPY shared ./shared
COPY services ./services
RUN /opt/venv/bin/python -m compileall -q -j 0 shared services

# ---- runtime: the interpreter, the venv and the code; no pip, no uv, no compilers ------------
FROM ${PYTHON_IMAGE} AS runtime
# the base image's own installers go too (nothing is installed at run time)
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && rm -f /usr/local/bin/pip* /usr/local/bin/wheel \
    && groupadd --system --gid 65532 fenxiao \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin fenxiao
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app/shared ./shared
COPY --from=build /app/services ./services
# numeric, so that Kubernetes' runAsNonRoot can verify it
USER 65532:65532
EXPOSE 8101 8102 8103 8104
CMD ["python", "-m", "services.referral.main"]
