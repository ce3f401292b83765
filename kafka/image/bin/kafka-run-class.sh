#!/usr/bin/env bash
# Runs one of Kafka's main classes on the image's jars, honouring the variables
# Kafka's own kafka-run-class.sh reads (KAFKA_HEAP_OPTS, KAFKA_OPTS, ...).
set -euo pipefail
config=/opt/kafka/config
# Command-line tools: a small heap, a quick start, log lines on stderr.
heap=${KAFKA_HEAP_OPTS:--Xmx256M}
jvm=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}
if [[ -z "${KAFKA_LOG4J_OPTS:-}" ]]; then
  tools_log=$config/tools-log4j2.yaml
  [[ -f $tools_log ]] || tools_log=/etc/kafka/docker/tools-log4j2.yaml
  KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=$tools_log"
fi
# Word splitting of the *_OPTS variables is intended: each holds several flags.
# shellcheck disable=SC2086
exec java $heap $jvm ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-} $KAFKA_LOG4J_OPTS ${KAFKA_OPTS:-} \
  -cp "/opt/kafka/libs/*" "$@"
