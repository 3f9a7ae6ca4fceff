"""Waiting for the session's job events in window tests."""

from __future__ import annotations

from studio.jobs import EventKind, JobKind


def wait_event(qtbot, session, kind: EventKind, job: JobKind | None = JobKind.GENERATE,
               timeout: int = 30_000):  # fmt: skip
    """``qtbot.waitSignal`` on ``session.event`` for the first event of ``kind`` (for a job of
    kind ``job``; None: any); ``blocker.args[0]`` is the event."""

    def matches(event) -> bool:
        return event.kind is kind and (job is None or event.is_for(job))

    return qtbot.waitSignal(session.event, timeout=timeout, check_params_cb=matches)
