"""Developer tooling: local Kafka, process supervision for `make run`."""
