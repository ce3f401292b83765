# One image for every Myko service; MYKO_SERVICE (command, repo, query, report,
# saga or gateway) chooses which one runs. docs/deploy.md says why and how.
#
#   docker build -t registry.example.com/myko:0.1.0 .
#   docker run -e MYKO_SERVICE=query -e MYKO_HOST=0.0.0.0 ... registry.example.com/myko:0.1.0
#
# Needs BuildKit (docker buildx, or DOCKER_BUILDKIT=1 on a client older than 23):
# the build arguments below choose stages, and only BuildKit skips the unused ones.
# By default the bases are the official images. Without a registry,
# `make images` (devtools/images.py) builds on bases made from Debian packages:
#
#   --build-arg PYTHON_IMAGE=myko-base/python:3.11-bookworm   (swarm/debian-bases.Dockerfile)
#   --build-arg UI_FROM=context     the UI built on the host (make ui-build) is copied
#                                   from ui/dist instead of built in a Node stage

ARG NODE_IMAGE=node:20-bookworm-slim
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# build: the UI is built here with Node 20; context: ui/dist comes from the build context.
ARG UI_FROM=build

# ---------------------------------------------------------------- UI (Node 20)
FROM ${NODE_IMAGE} AS ui-build
WORKDIR /src
# Manifests first: the dependency layer is rebuilt only when they change.
COPY package.json package-lock.json ./
COPY ui/package.json ui/
COPY client-ts/package.json client-ts/
# Root and every workspace (client-ts/, ui/) from the lockfile, nothing resolved anew.
# ca-bundle: the build machine's CA certificates, when given (see pydeps).
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca-bundle; fi \
 && npm ci --no-audit --no-fund
# The UI imports the example's generated TypeScript from gen/ts and the client
# package @myko/client from its sources in client-ts/.
COPY gen/ts gen/ts
COPY client-ts client-ts
COPY ui ui
RUN npm run build -w ui

# ------------------------------------------------ UI (prebuilt on the host)
FROM scratch AS ui-context
COPY ui/dist /src/ui/dist

FROM ui-${UI_FROM} AS ui

# ------------------------------------------------- Python dependencies (venv)
# Exactly the pinned runtime dependencies of pyproject.toml (no dev extras).
# Their list is extracted first, so only a change to it, not to the rest of
# pyproject.toml (tool settings), reinstalls them.
FROM ${PYTHON_IMAGE} AS requirements
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS pydeps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=requirements /tmp/requirements.txt /tmp/requirements.txt
# Installed before the sources so code changes reuse this layer. The secret
# ca-bundle (`--secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt`,
# which `make images` passes) lets pip trust what the build machine trusts, such
# as a TLS-inspecting proxy; it is mounted for this step only, never stored.
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /tmp/requirements.txt

# ----------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
# The sources run in place from /app, the same layout as the repository
# (ui/dist beside gateway/), so paths resolved relative to the code agree.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    MYKO_UI_DIST=/app/ui/dist \
    MYKO_APP=targets
RUN groupadd --system --gid 10001 myko \
 && useradd --system --uid 10001 --gid myko --home-dir /app --no-create-home --shell /usr/sbin/nologin myko
COPY --from=pydeps /opt/venv /opt/venv
WORKDIR /app
# Root-owned and read-only to the service user: a compromised service cannot
# rewrite its own code.
COPY pyproject.toml ./
COPY myko myko
COPY examples/targets/targets targets
COPY command_svc command_svc
COPY repo_svc repo_svc
COPY query_svc query_svc
COPY report_svc report_svc
COPY saga_svc saga_svc
COPY gateway gateway
COPY devtools devtools
COPY --from=ui /src/ui/dist ui/dist
# Bytecode compiled at build time: the service user cannot write __pycache__.
RUN python3 -m compileall -q /app
USER 10001:10001
# command, query, report, repo, saga (health only), gateway (HTTP)
EXPOSE 50051 50052 50053 50054 50055 8080
# gRPC health Check on 127.0.0.1:<port of MYKO_SERVICE>, HTTP /healthz for the gateway.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "devtools.healthcheck"]
ENTRYPOINT ["python", "-m", "devtools.entrypoint"]
