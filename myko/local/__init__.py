"""A Myko stack on this machine: a real Kafka from Maven jars and every service as a process.

What `myko run` (and this repository's `make run`) starts, and what integration
tests start: `kafka` (LocalKafka), `procs` (ServiceProcess, Stack), `topology`
(which services, ports and settings), `ports` (free, busy and browser-safe
ports) and `launcher` (the `myko run` command itself).
"""
