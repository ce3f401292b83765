# The bases the images build on when no registry is reachable: made only from
# Debian packages, on the minimal Debian that devtools/debian_base.py makes with
# debootstrap and `docker import` (BASE). Each target stands in for an official
# image the Dockerfiles use by default:
#
#   --target python   for python:3.11-slim-bookworm  (Dockerfile, PYTHON_IMAGE)
#   --target jre      for eclipse-temurin:17-jre      (kafka/Dockerfile, JRE_IMAGE)
#   --target node     for node:20-bookworm-slim       (idp/Dockerfile, NODE_IMAGE),
#                     on Debian 13 (NODE_BASE): bookworm's Node.js 18 lacks what
#                     oidc-provider 9 calls (URL.parse, crypto.hash)
#
# `make images` builds them when needed; docs/deploy.md ("Images") says when.

ARG BASE=myko-base/debian:bookworm
ARG NODE_BASE=myko-base/debian:trixie

FROM ${BASE} AS python
# Debian bookworm's Python is 3.11, the version the project targets; venv for /opt/venv.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]

FROM ${BASE} AS jre
# Kafka 4 needs Java 17 or later; the headless runtime is all a broker uses.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["java", "-version"]

FROM ${NODE_BASE} AS node
# Debian trixie's Node.js 20 (no npm: devtools/images.py installs the provider's
# packages on the host).
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["node"]
