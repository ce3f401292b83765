"""Clients of a deployed stack that use only its published gateway port, over grpc-web.

What a browser (or any client outside the swarm) can do: execute commands and
keep Watches open. Commands are retried with the same tx until acknowledged;
Watches are reopened when they end, with `at_least` = the last watermark seen,
and every emission is judged against the Ledger (tests/cluster_ledger.py): a
reconnect is allowed, a wrong result is not.

Every call carries a token of the stack's identity provider (ClientTokens:
client credentials, fetched again ahead of expiry). A Watch ends with
UNAUTHENTICATED when the token it was opened with expires (docs/security.md):
that is a reconnect too, with a fresh token; any other UNAUTHENTICATED is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from dataclasses import dataclass, field

import aiohttp
from cluster_ledger import Ledger, Position, covers, positions
from grpc_web_client import BINARY, FrameReader, call, frame, parse_trailers
from myko_client import pack, unpack
from targets.v1 import entities_pb2, queries_pb2, reports_pb2

from myko.v1 import command_pb2, item_pb2, query_pb2, report_pb2

Target = entities_pb2.Target

OK, CANCELLED, DEADLINE_EXCEEDED, ABORTED, UNAVAILABLE, UNAUTHENTICATED = 0, 1, 4, 10, 14, 16
RETRIABLE = {UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED}
# A gateway that is restarting resets connections or answers 502/503 meanwhile.
CONNECTION_ERRORS = (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError)
ATTEMPT_TIMEOUT_S = 10.0
COMMAND_BOUND_S = 120.0
# A token is fetched again once it has less than this left: a call made with it
# finishes, and a Watch opened with it runs a while, before it expires.
REFRESH_AHEAD_S = 90.0
# A stream ends within a few seconds of its token's expiry; that long after, it is the expiry.
EXPIRY_SLACK_S = 10.0


class ClientTokens:
    """Client-credentials tokens of one client at the issuer, renewed ahead of expiry."""

    def __init__(self, http: aiohttp.ClientSession, issuer: str, client_id: str, secret: str) -> None:
        self._http = http
        self._url = issuer.rstrip("/") + "/token"
        self._basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self._token = ""
        self.expires_at = 0.0
        self._lock = asyncio.Lock()

    async def fresh(self) -> tuple[str, float]:
        """(an access token, when it expires on the monotonic clock)."""
        async with self._lock:
            if time.monotonic() > self.expires_at - REFRESH_AHEAD_S:
                async with self._http.post(
                    self._url,
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": f"Basic {self._basic}"},
                ) as resp:
                    body = json.loads(await resp.read())
                    assert resp.status == 200, f"client credentials at {self._url}: {resp.status} {body}"
                self._token = str(body["access_token"])
                self.expires_at = time.monotonic() + float(body["expires_in"])
            return self._token, self.expires_at

    async def headers(self) -> dict[str, str]:
        token, _ = await self.fresh()
        return {"authorization": f"Bearer {token}"}


def watermark(fence: dict[Position, int]) -> item_pb2.Watermark:
    return item_pb2.Watermark(
        positions=[item_pb2.Offset(topic=t, partition=p, offset=o) for (t, p), o in sorted(fence.items())]
    )


@dataclass
class Acks:
    """When each command was first sent and acknowledged: recovery times come from these."""

    sent_acked: list[tuple[float, float]] = field(default_factory=list)
    retries: int = 0

    def first_after(self, t: float) -> float | None:
        """When the first command sent after `t` was acknowledged."""
        return min((acked for sent, acked in self.sent_acked if sent > t), default=None)

    async def wait_after(self, t: float, timeout_s: float, clients: list[asyncio.Task[int]]) -> float:
        """Seconds from `t` until a command sent after it is acknowledged."""
        async with asyncio.timeout(timeout_s):
            while (first := self.first_after(t)) is None:
                for task in clients:
                    if task.done():
                        task.result()  # a client's failure is the test's, at once
                await asyncio.sleep(0.05)
        return first - t


class GatewayCommands:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, acks: Acks, tokens: ClientTokens) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/myko.v1.CommandBus/Execute"
        self._acks = acks
        self._tokens = tokens

    async def execute(self, command: object, tx: str) -> command_pb2.CommandResult:
        request = command_pb2.CommandRequest(tx=tx, command=pack(command)).SerializeToString()  # type: ignore[arg-type]
        sent = time.monotonic()
        delay = 0.1
        while True:
            try:
                async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                    headers = {"grpc-timeout": "8S", **(await self._tokens.headers())}
                    reply = await call(self._http, self._url, request, headers=headers)
                code, detail = (reply.code, reply.message) if reply.http_status == 200 else (UNAVAILABLE, "")
            except CONNECTION_ERRORS as e:
                code, detail = UNAVAILABLE, repr(e)
            if code == OK:
                self._acks.sent_acked.append((sent, time.monotonic()))
                result = command_pb2.CommandResult.FromString(reply.messages[0])
                assert result.tx == tx
                return result
            if code not in RETRIABLE:
                raise AssertionError(f"tx {tx}: grpc-status {code} {detail}")
            if time.monotonic() - sent > COMMAND_BOUND_S:
                raise AssertionError(
                    f"tx {tx} not acknowledged within {COMMAND_BOUND_S}s (last {code} {detail})"
                )
            self._acks.retries += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(2.0, delay * 2)


class GatewayWatch:
    """One Watch through the gateway, reopened when it ends, every emission judged."""

    def __init__(
        self,
        name: str,
        kind: str,
        http: aiohttp.ClientSession,
        base_url: str,
        ledger: Ledger,
        tokens: ClientTokens,
    ) -> None:
        self.name = name
        self._tokens = tokens
        self.expiries = 0
        self.kind = kind
        self._http = http
        bus = "QueryBus" if kind == "query" else "ReportBus"
        self._url = base_url.rstrip("/") + f"/myko.v1.{bus}/Watch"
        self._ledger = ledger
        self.errors: list[str] = []
        self.emissions = 0
        self.last_emission_at = 0.0
        self.reopens: list[tuple[float, float | None]] = []  # (ended at, first emission after)
        self.last_wm: dict[Position, int] = dict(ledger.fence)
        self.last_targets: dict[str, Target] = {}
        self.last_total = -1

    def _request(self) -> bytes:
        at_least = watermark(self.last_wm)
        if self.kind == "query":
            return query_pb2.QueryRequest(
                query=pack(queries_pb2.AllTargets()), at_least=at_least
            ).SerializeToString()
        return report_pb2.ReportRequest(
            report=pack(reports_pb2.TargetCountsByStatus()), at_least=at_least
        ).SerializeToString()

    async def run(self) -> None:
        delay = 0.1
        while True:
            code, detail = UNAVAILABLE, "stream ended without trailers"
            expires_at = float("inf")
            try:
                token, expires_at = await self._tokens.fresh()
                async with self._http.post(
                    self._url,
                    data=frame(self._request()),
                    headers={"Content-Type": BINARY, "X-Grpc-Web": "1", "authorization": f"Bearer {token}"},
                ) as resp:
                    if resp.status == 200:
                        async for flag, payload in FrameReader(resp, text=False).frames():
                            if flag & 0x80:
                                trailers = parse_trailers(payload)
                                code, detail = (
                                    int(trailers.get("grpc-status", "-1")),
                                    trailers.get("grpc-message", ""),
                                )
                                break
                            self._emission(payload)
                            delay = 0.1
                    else:
                        detail = f"HTTP {resp.status}"
            except CONNECTION_ERRORS as e:
                detail = repr(e)
            if code == UNAUTHENTICATED and time.monotonic() > expires_at - EXPIRY_SLACK_S:
                self.expiries += 1  # the token it was opened with expired: reopened with a fresh one
                code = UNAVAILABLE
            if code not in (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, OK):
                self.errors.append(f"stream ended with grpc-status {code}: {detail}")
                return
            if not self.reopens or self.reopens[-1][1] is not None:
                self.reopens.append((time.monotonic(), None))
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    def _emission(self, payload: bytes) -> None:
        now = time.monotonic()
        if self.reopens and self.reopens[-1][1] is None:
            self.reopens[-1] = (self.reopens[-1][0], now)
        self.emissions += 1
        self.last_emission_at = now
        if self.kind == "query":
            msg: query_pb2.QueryResult | report_pb2.ReportResult = query_pb2.QueryResult.FromString(payload)
        else:
            msg = report_pb2.ReportResult.FromString(payload)
        wm = positions(msg.watermark)
        back = [tp for tp, off in self.last_wm.items() if wm.get(tp, 0) < off]
        if back:
            self._wrong(f"watermark went back on {back}")
        if isinstance(msg, query_pb2.QueryResult):
            targets = [unpack(a, Target) for a in msg.items]
            for problem in self._ledger.judge_targets(targets, wm):
                self._wrong(problem)
            now_by_id = {t.item.id: t for t in targets}
            for tid, before in self.last_targets.items():
                after = now_by_id.get(tid)
                if after is None:
                    self._wrong(f"{before.name} disappeared")
                elif after.hit_count < before.hit_count:
                    self._wrong(f"{before.name}: hit_count went down {before.hit_count} -> {after.hit_count}")
            self.last_targets = now_by_id
        else:
            value = unpack(msg.value, reports_pb2.StatusCounts)
            for problem in self._ledger.judge_total(value.total, wm):
                self._wrong(problem)
            if value.total < self.last_total:
                self._wrong(f"total went down {self.last_total} -> {value.total}")
            self.last_total = value.total
        self.last_wm = {**self.last_wm, **wm}

    def _wrong(self, problem: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"emission {self.emissions}: {problem}")

    def shows(self, final: dict[str, Target]) -> bool:
        """Its last emission is the final state (a report: the final total)."""
        if self.kind == "report":
            return self.last_total == len(final)
        target_fence = {
            tp: off for tp, off in self._ledger.fence.items() if tp[0].endswith("targets.v1.Target")
        }
        if not covers(self.last_wm, watermark(target_fence)):
            return False
        return {k: (t.name, t.hit_count) for k, t in self.last_targets.items()} == {
            k: (t.name, t.hit_count) for k, t in final.items()
        }

    def gaps(self, end: float) -> list[float]:
        """Seconds from each end of the stream to the next emission."""
        return [(b or end) - a for a, b in self.reopens]


async def final_state(
    http: aiohttp.ClientSession, base_url: str, ledger: Ledger, timeout_s: float, tokens: ClientTokens
) -> tuple[dict[str, Target], list[str]]:
    """The state at the acknowledged fence, once the saga's perimeter targets are there too."""
    url = base_url.rstrip("/") + "/myko.v1.QueryBus/Get"
    deadline = time.monotonic() + timeout_s
    wrong: list[str] = ["no answer"]
    targets: list[Target] = []
    while time.monotonic() < deadline:
        request = query_pb2.QueryRequest(query=pack(queries_pb2.AllTargets()), at_least=ledger.fence_proto)
        try:
            headers = {"grpc-timeout": "15S", **(await tokens.headers())}
            reply = await call(http, url, request.SerializeToString(), headers=headers)
        except CONNECTION_ERRORS:
            await asyncio.sleep(0.5)
            continue
        if reply.code == OK:
            result = query_pb2.QueryResult.FromString(reply.messages[0])
            targets = [unpack(a, Target) for a in result.items]
            wrong = ledger.judge_final(targets)
            if not wrong:
                break
        await asyncio.sleep(0.5)
    return {t.item.id: t for t in targets}, wrong
