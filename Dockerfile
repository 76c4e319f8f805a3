# syntax=docker/dockerfile:1
#
# Production image for Kumo. One image, two processes:
#   API (default):  docker run ... kumo
#   worker:         docker run ... kumo node --import tsx workers/main.ts
#   chart repo:     docker run ... kumo node --import tsx scripts/serve-charts.ts
# All configuration comes from environment variables (see domain/config.ts);
# no secret is baked into the image.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------
# Build stage: production dependencies only. better-sqlite3 is a native addon;
# when no prebuilt binary can be downloaded it compiles with node-gyp, which
# needs python3, make and g++. None of that toolchain reaches the final image.
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
# Unpinned on purpose: a build-only toolchain, whatever bookworm ships.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# tsx is a runtime dependency (the processes run TypeScript directly), so
# --omit=dev keeps it while dropping typescript, @types/* and test tooling.
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# ---------------------------------------------------------------------------
# Helm, built from source at the version the setup pins (scripts/setup.sh):
# the worker drives it to install and upgrade add-ons.
# ---------------------------------------------------------------------------
FROM golang:1.24-bookworm AS helm
RUN GOBIN=/out go install helm.sh/helm/v3/cmd/helm@v3.19.0

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# HOST: listen on every interface inside the container (Kumo's default is 127.0.0.1).
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080
WORKDIR /app

# Code and dependencies stay owned by root and read-only for the process; the
# non-root user can write only to .data (the SQLite default, when no
# DATABASE_URL is given) and to the temp dir (tsx's compile cache).
COPY --from=build /app/node_modules ./node_modules
COPY --from=helm /out/helm /usr/local/bin/helm
COPY package.json package-lock.json tsconfig.json ./
COPY api ./api
COPY activities ./activities
COPY domain ./domain
COPY providers ./providers
COPY store ./store
COPY workers ./workers
COPY workflows ./workflows
COPY sim ./sim
COPY scripts ./scripts
COPY charts ./charts
# The add-on catalog, packaged as a chart repository folder (.tools/charts)
# that the kumo-charts service serves; the API and worker read charts/ itself.
RUN node --import tsx scripts/package-charts.ts \
 && mkdir -p /app/.data && chown node:node /app/.data

# uid/gid 1000 is "node", the unprivileged user of the official Node.js images;
# numeric, so runtimes can verify it is not root (e.g. Kubernetes runAsNonRoot).
USER 1000:1000

EXPOSE 8080
# Readiness differs by process (the API has GET /readyz, the worker has no
# HTTP port), so health checks are defined by the deployment, not here.
CMD ["node", "--import", "tsx", "api/main.ts"]
