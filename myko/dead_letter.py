"""The dead-letter topic: events a saga gave up on, kept with the reason.

Each dead letter is the original record (same key, value and headers) plus
`myko-dlq-*` headers saying which saga failed, why, after how many attempts,
and where the event came from. The topic is never compacted or expired
(retention.ms=-1): a dead letter waits for an operator, not for a clock.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from myko.errors import Unavailable
from myko.events import Headers
from myko.saga_event import Position
from myko.settings import KafkaSettings
from myko.topics import TopicSpec

H_SAGA = "myko-dlq-saga"
H_REASON = "myko-dlq-reason"
H_ATTEMPTS = "myko-dlq-attempts"
H_TOPIC = "myko-dlq-topic"
H_PARTITION = "myko-dlq-partition"
H_OFFSET = "myko-dlq-offset"

MAX_REASON_BYTES = 4096


def dead_letter_topic(kafka: KafkaSettings, name: str) -> TopicSpec:
    return TopicSpec(
        kafka.topic_prefix + name,
        kafka.topic_partitions,
        {
            "cleanup.policy": "delete",
            "retention.ms": "-1",
            "min.insync.replicas": str(kafka.topic_min_insync_replicas),
        },
    )


class DeadLetters:
    def __init__(self, kafka: KafkaSettings, topic: str, *, client_id: str) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(
            **kafka.client_args(),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=kafka.request_timeout_ms,
        )

    async def start(self) -> None:
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            raise Unavailable(f"cannot start the dead-letter producer: {exc}") from exc

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self,
        *,
        saga: str,
        position: Position,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        reason: str,
        attempts: int,
    ) -> None:
        """Write one dead letter and wait until the broker has it (raises Unavailable)."""
        extra: Headers = [
            (H_SAGA, saga.encode()),
            (H_REASON, reason.encode()[:MAX_REASON_BYTES]),
            (H_ATTEMPTS, str(attempts).encode()),
            (H_TOPIC, position.topic.encode()),
            (H_PARTITION, str(position.partition).encode()),
            (H_OFFSET, str(position.offset).encode()),
        ]
        try:
            await self._producer.send_and_wait(self.topic, value=value, key=key, headers=[*headers, *extra])
        except (KafkaError, OSError) as exc:
            raise Unavailable(f"cannot write to dead-letter topic {self.topic}: {exc}") from exc
