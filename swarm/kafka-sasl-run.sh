#!/usr/bin/env bash
# Broker entrypoint of the secured stack (docker-stack.security.yml): the JAAS
# entries of the SASL listeners hold passwords, so they come from Swarm secrets
# into the KAFKA_* variables the image turns into server.properties (never into
# the stack file or `docker inspect`); then the image's own entrypoint runs.
set -euo pipefail
broker_jaas=$(cat /run/secrets/kafka_broker_jaas)
controller_jaas=$(cat /run/secrets/kafka_controller_jaas)
export KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG="$broker_jaas"
export KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG="$controller_jaas"
# The project's Kafka image (kafka/Dockerfile), then the official apache/kafka's.
for run in /opt/kafka/bin/run /etc/kafka/docker/run; do
  if [ -x "$run" ]; then
    exec "$run" "$@"
  fi
done
echo "kafka-sasl-run: this image has neither /opt/kafka/bin/run nor /etc/kafka/docker/run" >&2
exit 1
