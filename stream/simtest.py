"""``odistill sim-test``: run scenario suites, judge each against its criteria, report like a test run.

A driver of drivers: each scenario (:mod:`stream.scenarios`) runs the whole in-process
pipeline once per world seed (:func:`run_scenario`), the run's summary is measured against the
scenario's criteria (:func:`judge`), and the suite's results are printed as one table
(:func:`results_table`) and written as JUnit XML (:func:`write_junit`: one test case per
scenario, one failure per broken criterion naming the measured and the required value). A
scenario that cannot run (a bad file, a student file with the wrong shapes) is an *error*; the
other scenarios still run and report. ``--runner ray`` runs the scenarios as parallel Ray tasks
(:func:`stream.actors.run_scenarios_ray`); every run pins one torch thread, so both runners give
the same figures.

Example:
    >>> measured = {"min_miou": {"all": 0.61, "fog@oldtown": 0.38}, "max_teacher_rate": 0.12}
    >>> [f.message for f in judge({"min_miou": {"all": 0.5, "fog@oldtown": 0.45}, "max_teacher_rate": 0.2}, measured)]
    ['min_miou[fog@oldtown]: measured 0.380, required >= 0.450']
"""
from __future__ import annotations

import json
import logging
import math
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stream.scenarios import CRITERIA, Scenario, ScenarioError, find_scenarios, load_scenario

log = logging.getLogger(__name__)

SIM_TEST_SETTINGS = ("run.torch_threads=1",)  # one thread per run: the same figures sequentially and on Ray


@dataclass(frozen=True)
class Failure:
    """One broken criterion: its name, what was measured, what was required."""

    criterion: str
    measured: Any
    required: str
    seed: int | None = None

    @property
    def message(self) -> str:
        value = f"{self.measured:.3f}" if isinstance(self.measured, float) else str(self.measured)
        where = f"seed {self.seed}: " if self.seed is not None else ""
        return f"{where}{self.criterion}: measured {value}, required {self.required}"


@dataclass
class ScenarioResult:
    """What one scenario did: ``status`` passed | failed | error."""

    name: str
    path: str
    status: str
    seeds: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # one message per broken criterion (and seed)
    error: str | None = None
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)  # per seed
    run_dirs: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    frames: int = 0
    closed_loop: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# ---- measuring and judging ---------------------------------------------------------------------


def measure(summary: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    """The figures a scenario's criteria bound, taken from one run's summary.

    ``min_miou``: {"all": .., domain: ..}; ``max_drift_delay``: the worst delay in frames, or
    "missed" when a change went undetected; ``max_forgetting``: the worst mIoU lost on a
    return (first visit's last frames minus the return's first frames); ``min_robust_miou``:
    the worst PGD radius; the closed-loop figures from the driving record.
    """
    per_domain = summary.get("per_domain", {})
    out: dict[str, Any] = {
        "min_miou": {"all": summary.get("student_miou"),
                     **{domain: scores.get("student_miou") for domain, scores in per_domain.items()}},
        "max_teacher_rate": summary.get("teacher_rate"),
    }
    drift = summary.get("drift", {})
    delays = list(drift.get("delays", {}).values())
    out["max_drift_delay"] = "missed" if drift.get("missed") else (max(delays) if delays else None)
    out["max_forgetting"] = forgetting(summary.get("visits", []))
    robust = [value for value in (summary.get("student_robust_miou") or {}).values() if value is not None]
    out["min_robust_miou"] = min(robust) if robust else None
    driving = summary.get("driving")
    if driving is not None:
        out["max_lane_departures"] = driving["lane_departures"]
        out["max_seconds_off_road"] = driving["seconds_off_road"]
        out["min_car_clearance_m"] = driving["min_car_clearance_m"]
    return out


def forgetting(visits: list[dict[str, Any]]) -> float | None:
    """The worst mIoU lost on a returning domain: a domain's first visit's ``tail_miou`` minus
    a later visit's ``head_miou`` (None when nothing returns).

    Example:
        >>> visits = [{"domain": "a", "tail_miou": 0.8, "head_miou": 0.5}, {"domain": "b", "tail_miou": 0.6, "head_miou": 0.4},
        ...           {"domain": "a", "tail_miou": 0.75, "head_miou": 0.7}]
        >>> round(forgetting(visits), 3)
        0.1
    """
    first: dict[str, float] = {}
    worst: float | None = None
    previous = None
    for visit in visits:
        domain = visit["domain"]
        if domain in first and domain != previous and visit.get("head_miou") is not None:
            lost = first[domain] - visit["head_miou"]
            worst = lost if worst is None else max(worst, lost)
        if domain not in first and visit.get("tail_miou") is not None:
            first[domain] = visit["tail_miou"]
        previous = domain
    return worst


def judge(criteria: dict[str, Any], measured: dict[str, Any], seed: int | None = None) -> list[Failure]:
    """The criteria a run broke (see :data:`stream.scenarios.CRITERIA`). A figure that was not
    measured (no robustness frames, no car in sight) fails a criterion that needs it, except
    the clearance: no car within 50 m is a pass."""
    failures: list[Failure] = []
    for name, bound in criteria.items():
        if name == "min_miou":
            for domain, low in bound.items():
                value = measured["min_miou"].get(domain)
                if value is None or (isinstance(value, float) and math.isnan(value)) or value < low:
                    failures.append(Failure(f"min_miou[{domain}]", "not measured" if value is None else value, f">= {low:.3f}", seed))
            continue
        value = measured.get(name)
        if name == "min_car_clearance_m" and value is None:
            continue  # no car came within 50 m
        if value is None:
            failures.append(Failure(name, "not measured", _required(name, bound), seed))
        elif value == "missed":
            failures.append(Failure(name, "a domain change was never detected", _required(name, bound), seed))
        elif name.startswith("max_") and value > bound:
            failures.append(Failure(name, value, _required(name, bound), seed))
        elif name.startswith("min_") and value < bound:
            failures.append(Failure(name, value, _required(name, bound), seed))
    return failures


def _required(name: str, bound: float) -> str:
    sign = "<=" if name.startswith("max_") else ">="
    return f"{sign} {bound:g}"


# ---- running -----------------------------------------------------------------------------------


def scenario_config(scenario: Scenario, seed: int, out_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The run configuration of one scenario on one world seed."""
    from stream.config import load_config

    settings = [*SIM_TEST_SETTINGS, *scenario.overrides(), f"run.seed={seed}",
                f"run.out={out_dir / scenario.name / f'seed-{seed}'}", f"run.source=sim:{scenario.name}",
                "run.runner=local", *overrides]
    return load_config(None, settings)


def check_student(scenario: Scenario, config: Any) -> None:
    """Load the scenario's student before running: a missing file or wrong shapes is an error
    naming the scenario file (and the weights file)."""
    from stream.builders import build_student

    try:
        build_student(config)
    except Exception as error:  # CheckpointError, ConfigError, shape mismatches: all name the weights file
        raise ScenarioError(f"{scenario.path}:{scenario.weights_line}: student.weights: {error}") from None


def run_scenario(scenario: Scenario, out_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ScenarioResult:
    """Run one scenario on each of its seeds and judge it; never raises for the scenario's own
    faults (they come back as an ``error`` result)."""
    from sim.control import LaneKeeperConfig
    from stream.local import run_local
    from stream.sources.sim import SimSource

    out_dir = Path(out_dir)
    result = ScenarioResult(scenario.name, str(scenario.path), "passed", seeds=list(scenario.seeds),
                            frames=scenario.frames, closed_loop=scenario.closed_loop)
    started = time.perf_counter()
    try:
        for seed in scenario.seeds:
            config = scenario_config(scenario, seed, out_dir, overrides)
            check_student(scenario, config)
            source = SimSource(config.sim, seed=seed, frames=scenario.frames, schedule=scenario.schedule(),
                               closed_loop=LaneKeeperConfig() if scenario.closed_loop else None)
            log.info("sim-test %s: seed %d, %d frames", scenario.name, seed, scenario.frames)
            summary = run_local(config, progress=False, source=source)
            measured = measure(summary, scenario)
            result.measured[str(seed)] = measured
            result.run_dirs.append(str(config.run.out))
            result.failures += [failure.message for failure in judge(scenario.criteria, measured, seed)]
    except ScenarioError as error:
        result.status, result.error = "error", str(error)
    except Exception as error:  # a scenario that crashes the pipeline: reported, the suite goes on
        result.status = "error"
        result.error = f"{scenario.path}: {type(error).__name__}: {error}"
        log.error("sim-test %s crashed:\n%s", scenario.name, traceback.format_exc())
    if result.status != "error" and result.failures:
        result.status = "failed"
    result.wall_s = time.perf_counter() - started
    return result


def load_suite(paths: list[str | Path]) -> tuple[list[Scenario], list[ScenarioResult]]:
    """The scenarios that load, and an ``error`` result for each file that does not."""
    scenarios, errors = [], []
    for path in find_scenarios(paths):
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as error:
            errors.append(ScenarioResult(Path(path).stem, str(path), "error", error=str(error)))
    names = [s.name for s in scenarios]
    for scenario in scenarios:
        if names.count(scenario.name) > 1:
            raise ScenarioError(f"{scenario.path}: scenario name {scenario.name!r} is used by more than one file "
                                f"(their run folders would collide)")
    return scenarios, errors


def run_suite(scenarios: list[Scenario], out_dir: str | Path, runner: str = "local", address: str | None = None,
              overrides: list[str] | tuple[str, ...] = ()) -> list[ScenarioResult]:
    """Every scenario's result, in the given order (``runner``: local, one after the other; or
    ray, as parallel tasks, joining the cluster at ``address`` when given)."""
    if runner == "ray":
        from stream.actors import run_scenarios_ray

        return run_scenarios_ray(scenarios, str(out_dir), list(overrides), address=address)
    if runner != "local":
        raise ValueError(f"sim-test --runner must be local or ray, got {runner!r}")
    return [run_scenario(scenario, out_dir, overrides) for scenario in scenarios]


# ---- reporting ---------------------------------------------------------------------------------


def _worst(result: ScenarioResult, key: str, pick: Any) -> Any:
    values = [m.get(key) for m in result.measured.values()]
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return pick(values) if values else None


def results_table(results: list[ScenarioResult], wall_s: float | None = None) -> str:
    """One line per scenario (the worst seed's figures), then each failure and error."""
    def f(value: Any, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [f"{'scenario':<28}{'status':>8}{'seeds':>6}{'frames':>7}{'mIoU':>7}{'teacher':>8}{'drift':>7}"
             f"{'forget':>8}{'robust':>8}{'lane dep':>9}{'off road s':>11}{'wall s':>8}"]
    for r in results:
        miou = min((m["min_miou"]["all"] for m in r.measured.values() if m["min_miou"].get("all") is not None), default=None)
        drift = [m.get("max_drift_delay") for m in r.measured.values()]
        drift_text = "missed" if "missed" in drift else f(_worst(r, "max_drift_delay", max))
        lines.append(f"{r.name[:27]:<28}{r.status:>8}{len(r.seeds):>6}{r.frames:>7}{f(miou):>7}"
                     f"{f(_worst(r, 'max_teacher_rate', max)):>8}{drift_text:>7}{f(_worst(r, 'max_forgetting', max)):>8}"
                     f"{f(_worst(r, 'min_robust_miou', min)):>8}{f(_worst(r, 'max_lane_departures', max)):>9}"
                     f"{f(_worst(r, 'max_seconds_off_road', max), 1):>11}{r.wall_s:>8.0f}")
    counts = {status: sum(r.status == status for r in results) for status in ("passed", "failed", "error")}
    tail = f" in {wall_s:.0f} s" if wall_s is not None else ""
    lines.append(f"{len(results)} scenarios: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors{tail}")
    for r in results:
        for message in r.failures:
            lines.append(f"FAILED {r.name}: {message}")
        if r.error:
            lines.append(f"ERROR  {r.name}: {r.error}")
    return "\n".join(lines)


def write_junit(results: list[ScenarioResult], path: str | Path, suite_name: str = "sim-test") -> Path:
    """JUnit XML: one test case per scenario, one failure per broken criterion, an error for a
    scenario that could not run."""
    from junitparser import Error, JUnitXml, Properties, Property, TestCase, TestSuite
    from junitparser import Failure as JUnitFailure

    suite = TestSuite(suite_name)
    for r in results:
        case = TestCase(r.name, classname=f"scenarios.{Path(r.path).stem}", time=round(r.wall_s, 3))
        if r.error:
            case.result = [Error(r.error, type_="ScenarioError")]
        elif r.failures:
            case.result = [JUnitFailure(message, type_="criterion") for message in r.failures]
        suite.add_testcase(case)
    properties = Properties()
    properties.add_property(Property("scenarios", str(len(results))))
    suite.append(properties)
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xml.write(str(path), pretty=True)
    return path


def write_results(results: list[ScenarioResult], out_dir: str | Path, wall_s: float, runner: str) -> Path:
    """``results.json`` in the suite's folder: every scenario's status, failures and figures."""
    path = Path(out_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runner": runner, "wall_s": wall_s, "criteria": CRITERIA,
                                "scenarios": [asdict(r) for r in results]}, indent=1, default=str))
    return path


__all__ = ["Failure", "ScenarioResult", "forgetting", "judge", "load_suite", "measure", "results_table", "run_scenario", "run_suite", "write_junit", "write_results"]
