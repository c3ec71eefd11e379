"""The liveness watchdog of a model worker, as a pure decision: a worker
that has requests in flight must keep answering (its heartbeat, every
second) and keep making progress (its engine's steps advance, or it has
nothing queued in the engine). A worker stopped (SIGSTOP), or stuck in a
decode whose device or ggml-rpc-server no longer answers, is `stalled`: the
supervisor reports it in /health, fails its requests with the cause, and
kills it (then restarts it) if it stays stalled as long again."""
from __future__ import annotations

from dataclasses import dataclass

HEARTBEAT_S = 1.0          # how often the worker reports its engine's counters


@dataclass
class Liveness:
    """What the supervisor has heard from its worker (monotonic seconds)."""
    heard_at: float = 0.0        # any message
    progress_at: float = 0.0     # a reply to a request, or a heartbeat whose engine advanced (or had nothing to do)
    steps: int = -1              # the engine's step count at the last heartbeat

    def heartbeat(self, now: float, stats: dict) -> None:
        self.heard_at = now
        steps = int(stats.get("steps", 0))
        idle = not stats.get("active") and not stats.get("queue_depth")
        if steps != self.steps or idle:
            self.progress_at = now
        self.steps = steps

    def reply(self, now: float) -> None:
        self.heard_at = self.progress_at = now


def stalled(live: Liveness, now: float, in_flight: int, limit: float) -> str | None:
    """Why the worker counts as stalled now, or None."""
    if not limit or not in_flight:
        return None
    if now - live.heard_at > limit:
        return (f"the model worker has not answered for {now - live.heard_at:.0f} s with {in_flight} requests in "
                "flight (stopped?)")
    if now - live.progress_at > limit:
        return (f"the model worker made no progress for {now - live.progress_at:.0f} s with {in_flight} requests in "
                "flight (a device or ggml-rpc-server not answering?)")
    return None
