# One image for all four services; the Deployment chooses the module to run.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_FROZEN=1 UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --no-dev --no-install-project
COPY shared ./shared
COPY services ./services
ENV PATH=/opt/venv/bin:$PATH
USER 65532:65532
# e.g. python -m services.commission.main
CMD ["python", "-m", "services.referral.main"]
