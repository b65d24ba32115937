# Carmenta in one image: `docker build -t carmenta --build-arg PUBLIC_URL=https://... .`
# then `docker run -p 3000:3000 --env-file .env -v carmenta-data:/var/lib/carmenta carmenta`.
# The build runs the same steps as `make run`: scripts/setup.sh installs the pinned
# packages and bun, `python -m carmenta build` compiles the interface.
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- build: Python packages, bun, and the compiled interface ---------------------------
FROM ${PYTHON_IMAGE} AS build
# Node.js 20+ with npm: scripts/setup.sh installs bun from the npm registry with them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-model.txt ./
COPY scripts/setup.sh scripts/setup.sh
RUN PYTHON=python3 scripts/setup.sh
COPY . .
# The interface is compiled for the address people use (the browser's backend URL is
# baked in). Render passes the service's environment variables as build arguments.
ARG PUBLIC_URL=http://localhost:3000
ENV PUBLIC_URL=${PUBLIC_URL} \
    CARMENTA_ENV=development
RUN .venv/bin/python -m carmenta build \
    && rm -rf .web/node_modules

# --- runtime: the packages, the sources and the built interface; no Node, no bun --------
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin carmenta \
    && mkdir -p /var/lib/carmenta /app \
    && chown carmenta:carmenta /var/lib/carmenta /app
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /app/carmenta /app/carmenta
COPY --from=build /app/alembic /app/alembic
COPY --from=build /app/assets /app/assets
COPY --from=build /app/alembic.ini /app/rxconfig.py /app/requirements.txt /app/
COPY --from=build --chown=carmenta:carmenta /app/.web /app/.web
ARG PUBLIC_URL=http://localhost:3000
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PUBLIC_URL=${PUBLIC_URL} \
    DATA_DIR=/var/lib/carmenta \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json
USER carmenta
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import os,urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/health\", timeout=4)"]
# `run` applies pending migrations, checks the configuration (CARMENTA_ENV=production
# refuses unsafe settings) and serves on $PORT. Workers: `python -m carmenta worker`.
CMD ["python", "-m", "carmenta", "run"]
