"""Open streams follow their token: each is ended when its token expires or is revoked.

One task per service re-checks every open stream's principal every
MYKO_AUTH_RECHECK_MS (at most a second): an expired or revoked one gets its
stream failed with the Authenticator's reason (UNAUTHENTICATED). A check is
a clock comparison and a dictionary lookup, so ten thousand streams cost
milliseconds a second. With auth off nothing is registered and no task runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from myko.authentication import Authenticator
from myko.errors import MykoError
from myko.principal import Principal

log = logging.getLogger(__name__)

Fail = Callable[[MykoError], None]


class StreamGuard:
    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth
        self._interval_s = auth.settings.recheck_ms / 1000
        self._streams: dict[int, tuple[Principal, Fail]] = {}
        self._next_id = 0
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._streams)

    @contextlib.contextmanager
    def watching(self, principal: Principal, fail: Fail) -> Iterator[None]:
        """While inside, `fail(reason)` is called (once) when the principal stops being valid."""
        if principal.anonymous:
            yield
            return
        problem = self._auth.problem(principal)
        if problem is not None:
            raise problem
        stream_id = self._next_id
        self._next_id += 1
        self._streams[stream_id] = (principal, fail)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stream-guard")
        try:
            yield
        finally:
            self._streams.pop(stream_id, None)

    def check(self) -> int:
        """Fail every stream whose principal is no longer valid; how many were."""
        ended = 0
        # Principals repeat (one token, many streams): decide each once per round.
        verdicts: dict[Principal, MykoError | None] = {}
        for stream_id, (principal, fail) in list(self._streams.items()):
            if principal not in verdicts:
                verdicts[principal] = self._auth.problem(principal)
            problem = verdicts[principal]
            if problem is not None:
                del self._streams[stream_id]
                ended += 1
                fail(problem)
        if ended:
            log.info("ended %d stream(s) whose token expired or was revoked", ended)
        return ended

    async def _run(self) -> None:
        while self._streams:
            await asyncio.sleep(self._interval_s)
            try:
                self.check()
            except Exception:
                log.exception("stream re-check failed; will try again")

    async def close(self) -> None:
        self._streams.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
