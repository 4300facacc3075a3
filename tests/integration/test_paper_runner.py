"""The study's step runner: markers, resuming after a crash, forcing a step and its dependents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imde.paper.runner import Step, StepRunner, check_steps, dependents


class Recorder:
    """Stand-in steps that record every call and can be told to crash once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.crash: set[str] = set()

    def step(self, name: str, after: tuple[str, ...] = ()) -> Step:
        def run() -> dict[str, str]:
            self.calls.append(name)
            if name in self.crash:
                self.crash.discard(name)
                raise RuntimeError(f"{name} crashed")
            return {"ran": name}

        return Step(name, run, after)


def plan(rec: Recorder) -> list[Step]:
    # a -> b -> d, a -> c (c does not depend on b), e depends on c and d
    return [rec.step("a"), rec.step("b", ("a",)), rec.step("c", ("a",)), rec.step("d", ("b",)),
            rec.step("e", ("c", "d"))]


def test_runs_in_order_and_writes_markers(tmp_path: Path) -> None:
    rec = Recorder()
    records = StepRunner(tmp_path).run(plan(rec))
    assert rec.calls == ["a", "b", "c", "d", "e"]
    assert all(record.ran_now for record in records.values())
    marker = json.loads((tmp_path / "steps" / "c.done").read_text())
    assert marker["step"] == "c" and marker["summary"] == {"ran": "c"} and marker["seconds"] >= 0


def test_finished_steps_are_not_redone(tmp_path: Path) -> None:
    rec = Recorder()
    StepRunner(tmp_path).run(plan(rec))
    rec.calls.clear()
    records = StepRunner(tmp_path).run(plan(rec))
    assert rec.calls == []
    assert not any(record.ran_now for record in records.values())
    assert records["b"].summary == {"ran": "b"}


def test_a_crashed_step_leaves_no_marker_and_is_redone(tmp_path: Path) -> None:
    rec = Recorder()
    rec.crash.add("c")
    with pytest.raises(RuntimeError, match="c crashed"):
        StepRunner(tmp_path).run(plan(rec))
    assert rec.calls == ["a", "b", "c"]
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["a.done", "b.done"]
    rec.calls.clear()
    StepRunner(tmp_path).run(plan(rec))
    assert rec.calls == ["c", "d", "e"]


def test_unreadable_marker_counts_as_unfinished(tmp_path: Path) -> None:
    rec = Recorder()
    StepRunner(tmp_path).run(plan(rec))
    (tmp_path / "steps" / "d.done").write_text("{truncated")
    rec.calls.clear()
    StepRunner(tmp_path).run(plan(rec))
    assert rec.calls == ["d"]


def test_force_redoes_the_step_and_everything_depending_on_it(tmp_path: Path) -> None:
    rec = Recorder()
    runner = StepRunner(tmp_path)
    runner.run(plan(rec))
    assert runner.forget(plan(rec), ["b"]) == ["b", "d", "e"]
    rec.calls.clear()
    runner.run(plan(rec))
    assert rec.calls == ["b", "d", "e"]


def test_dependents_and_plan_checks() -> None:
    rec = Recorder()
    steps = plan(rec)
    assert dependents(steps, ["c"]) == ["c", "e"]
    assert dependents(steps, ["a"]) == ["a", "b", "c", "d", "e"]
    with pytest.raises(ValueError, match=r"unknown step\(s\) \['zz'\]; the steps are: a, b, c, d, e"):
        dependents(steps, ["zz"])
    with pytest.raises(ValueError, match="defined twice"):
        check_steps([rec.step("a"), rec.step("a")])
    with pytest.raises(ValueError, match=r"depends on \['b'\], which are not earlier steps"):
        check_steps([rec.step("a", ("b",)), rec.step("b")])
