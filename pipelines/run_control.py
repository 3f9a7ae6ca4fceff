"""Pause, step and resume a run, and branch it while it is paused.

A :class:`RunControl` is shared by the thread that denoises (the engine asks it at every sampler
step boundary whether to hold there) and the thread that steers (the window, a script): it only
holds plain state behind one lock. Holding happens between two steps, after the step's preview was
delivered and before the next model call, so the model stays loaded and a held run resumes exactly
where it stood: a paused, stepped and resumed run gives the same image, bit for bit, as one that
never stopped. A cancel reaches a held run within :data:`POLL_SECONDS`.

Qt-free and torch-free: the window's session imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import fields, replace

from pipelines.errors import ValidationError
from pipelines.types import BRANCH_KEYS, Branch, GenerationRequest

POLL_SECONDS = 0.05  # how often a held run looks at its cancel flag

HoldListener = Callable[[int, int], None]  # (completed steps, total steps)
BranchCheck = Callable[[GenerationRequest], None]


def merge_branches(first: Branch, second: Branch) -> Branch:
    """One branch at ``second``'s step with ``second``'s changes over ``first``'s."""
    changes = {
        name: getattr(second, name) for name in BRANCH_KEYS if getattr(second, name) is not None
    }
    return replace(first, step=second.step, **changes)


class RunControl:
    def __init__(self, on_hold: HoldListener | None = None,
                 on_release: HoldListener | None = None) -> None:  # fmt: skip
        self.on_hold = on_hold
        self.on_release = on_release
        self._condition = threading.Condition()
        self._paused = False
        self._allowed = 0  # steps the run may take while paused
        self._held_at: int | None = None
        self._total = 0
        self._request: GenerationRequest | None = None
        self._branches: dict[int, Branch] = {}
        self._check: BranchCheck | None = None
        self._undo: list[Callable[[], None]] = []

    # ---- asked by whoever steers the run (any thread) -----------------------------------------
    @property
    def paused(self) -> bool:
        with self._condition:
            return self._paused

    @property
    def held_at(self) -> int | None:
        """The completed steps of a run held now; None while it runs."""
        with self._condition:
            return self._held_at

    def pause(self) -> None:
        """Hold at the next step boundary."""
        with self._condition:
            self._paused, self._allowed = True, 0

    def step(self, count: int = 1) -> None:
        """Take ``count`` more steps, then hold again (pauses a running run after them)."""
        with self._condition:
            self._paused = True
            self._allowed += max(1, count)
            self._condition.notify_all()

    def resume(self) -> None:
        with self._condition:
            self._paused, self._allowed = False, 0
            self._condition.notify_all()

    def branch(self, branch: Branch) -> GenerationRequest:
        """Change settings for the rest of a held run, from the step it is held at; several
        branches at one step merge. Returns the run's request with every branch so far.
        :class:`ValidationError` when the run is not held at ``branch.step`` or the change cannot
        be made (the run goes on unchanged)."""
        with self._condition:
            if self._held_at is None or self._request is None:
                raise ValidationError("Pause the run before branching it.")
            if branch.step != self._held_at:
                raise ValidationError(f"The run is held at step {self._held_at}, not at step "
                                      f"{branch.step}.")  # fmt: skip
            merged = dict(self._branches)
            if branch.step in merged:
                branch = merge_branches(merged[branch.step], branch)
            merged[branch.step] = branch
            request = replace(self._request, branches=tuple(merged[s] for s in sorted(merged)))
            request.check_fields()
            if self._check is not None:
                self._check(request)
            self._branches = merged
            return request

    # ---- asked by the engine, in the thread that denoises -------------------------------------
    def begin(self, request: GenerationRequest, check: BranchCheck | None = None,
              total: int | None = None) -> None:  # fmt: skip
        """A run of ``request`` starts (``total`` steps: fewer than its steps when it reworks an
        image); ``check`` refuses a request whose branches the loaded model cannot follow."""
        with self._condition:
            self._request = request
            self._total = total or request.steps
            self._branches = {branch.step: branch for branch in request.branches}
            self._check = check
            self._held_at = None

    def decide(self) -> bool:
        """At a step boundary: whether the run holds here. A step allowed while paused is spent."""
        with self._condition:
            if not self._paused:
                return False
            if self._allowed:
                self._allowed -= 1
                return False
            return True

    def hold(self, completed: int, cancel: threading.Event) -> None:
        """Wait (after :meth:`decide` said so) until a resume, a step or ``cancel``."""
        with self._condition:
            self._held_at = completed
        if self.on_hold is not None:
            self.on_hold(completed, self._total)
        with self._condition:
            while self._paused and not self._allowed and not cancel.is_set():
                self._condition.wait(POLL_SECONDS)
            if self._paused and self._allowed:
                self._allowed -= 1  # this release is the step it allowed
            self._held_at = None
        if self.on_release is not None and not cancel.is_set():
            self.on_release(completed, self._total)

    def on_end(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` when the run ends (a change a branch made to the shared pipeline)."""
        self._undo.append(undo)

    def end(self) -> None:
        undo, self._undo = self._undo, []
        for action in reversed(undo):
            action()

    def branch_at(self, completed: int) -> Branch | None:
        with self._condition:
            return self._branches.get(completed)

    def branches(self) -> tuple[Branch, ...]:
        with self._condition:
            return tuple(self._branches[step] for step in sorted(self._branches))

    def request(self) -> GenerationRequest | None:
        """The run's request with every branch so far; None before it starts."""
        with self._condition:
            if self._request is None:
                return None
            branches = tuple(self._branches[step] for step in sorted(self._branches))
            return replace(self._request, branches=branches)


def branch_between(before: GenerationRequest, after: GenerationRequest, step: int) -> Branch | None:
    """The branch at ``step`` that turns ``before``'s settings into ``after``'s: prompt, negative
    prompt, CFG, sampler, and the strength of the first active ControlNet (applied to every
    active unit). None when none of them differ."""
    changes: dict[str, object] = {}
    for key, name in (("prompt", "prompt"), ("negative", "negative_prompt"),
                      ("cfg", "cfg_scale"), ("sampler", "sampler")):  # fmt: skip
        if getattr(before, name) != getattr(after, name):
            changes[key] = getattr(after, name)
    units_before, units_after = before.active_controls, after.active_controls
    if units_before and units_after and units_before[0].strength != units_after[0].strength:
        changes["control_strength"] = units_after[0].strength
    if not changes:
        return None
    return Branch(step=step, **changes)  # type: ignore[arg-type]


def effective_request(request: GenerationRequest, step: int) -> GenerationRequest:
    """``request``'s settings as they stand after ``step`` completed steps, its branches up to
    that step applied (what a branch at ``step`` changes from)."""
    current = request
    for branch in request.branches:
        if branch.step > step:
            break
        values = {f.name: getattr(branch, f.name) for f in fields(branch)}
        if values["prompt"] is not None:
            current = replace(current, prompt=values["prompt"])
        if values["negative"] is not None:
            current = replace(current, negative_prompt=values["negative"])
        if values["cfg"] is not None:
            current = replace(current, cfg_scale=values["cfg"])
        if values["sampler"] is not None:
            current = replace(current, sampler=values["sampler"])
        if values["control_strength"] is not None:
            strength = values["control_strength"]
            current = replace(current, controls=tuple(
                replace(u, strength=strength) if u.enabled else u for u in current.controls))  # fmt: skip
    return current
