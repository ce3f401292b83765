"""What the benchmark ran on, so recorded numbers can be compared honestly."""

from __future__ import annotations

import datetime
import os
import platform
import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from myko.local.kafka import default_jar_dir


@dataclass(frozen=True)
class Machine:
    cpus: int
    cpu_model: str
    memory_gib: float
    kernel: str
    python: str
    kafka: str
    aiokafka: str
    grpcio: str
    date_utc: str
    load_at_start: str

    def lines(self) -> list[tuple[str, str]]:
        return [
            ("Date (UTC)", self.date_utc),
            ("CPUs (nproc)", str(self.cpus)),
            ("CPU model", self.cpu_model),
            ("Memory", f"{self.memory_gib:.1f} GiB"),
            ("Kernel", self.kernel),
            ("Python", self.python),
            ("Kafka broker", self.kafka),
            ("aiokafka", self.aiokafka),
            ("grpcio", self.grpcio),
            ("Load average at start (1/5/15 min)", self.load_at_start),
        ]


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else "unknown"


def _memory_gib() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^MemTotal:\s*(\d+) kB$", text, re.MULTILINE)
    return int(found.group(1)) / (1024 * 1024) if found else 0.0


def local_kafka_version() -> str:
    jars = sorted(default_jar_dir().glob("kafka_2.13-*.jar"))
    if not jars:
        return "unknown"
    return "Apache Kafka " + jars[-1].name.removeprefix("kafka_2.13-").removesuffix(".jar")


def describe_machine(*, kafka: str, load_at_start: str) -> Machine:
    return Machine(
        cpus=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        memory_gib=_memory_gib(),
        kernel=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        kafka=kafka,
        aiokafka=version("aiokafka"),
        grpcio=version("grpcio"),
        date_utc=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        load_at_start=load_at_start,
    )
