"""Scenario files: a simulator-in-the-loop test as data (``scenarios/*.toml``).

A scenario names the world (towns, a weather schedule of abrupt changes and gradual fades,
traffic and pedestrian density, stops at lights, its length and world seeds), the student
under test (a weights file; learning online or frozen), whether the student steers (closed
loop), and the criteria it must meet. :func:`load_scenario` reads and checks one file; every
mistake is a :class:`ScenarioError` naming the file and the line. ``odistill sim-test``
(:mod:`stream.simtest`) runs them.

A file::

    description = "night falls in the old town"
    frames = 300                       # the stream's length
    seeds = [101001]                   # world seeds: held out (sim.seeds.SCENARIO_WORLDS)
    short = true                       # short enough for the test suite
    closed_loop = false                # the student steers the ego (sim.control)

    [student]
    weights = "default"                # default (the shipped student) | none (random) | a weights file | a bundle folder
    learn = true                       # learn online, or stay frozen

    [world]                            # sim.world.SimConfig fields, but town and weather
    traffic_density = 1.0

    [[schedule]]                       # the weather schedule: each entry from frame `at` on
    at = 0
    weather = "clear"
    town = "oldtown"
    [[schedule]]
    at = 150
    weather = "night"
    fade = 100                         # a gradual change over 100 frames (same town)

    [criteria]
    min_miou = 0.5                     # or a table: all = 0.5, "night@oldtown" = 0.4
    max_drift_delay = 60               # frames; a missed shift fails
    max_teacher_rate = 0.3
    max_forgetting = 0.05              # mIoU lost on a returning domain
    min_robust_miou = 0.2              # the worst PGD radius on the robustness frames
    max_lane_departures = 0            # closed loop
    max_seconds_off_road = 0.0
    min_car_clearance_m = 0.2

    [config]                           # any run setting, as --set takes it
    "scheduler.max_rate" = 0.4

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "dusk.toml").write_text(
    ...     'frames = 40\\nseeds = [101001]\\n[[schedule]]\\nat = 0\\nweather = "clear"\\ntown = "oldtown"\\n'
    ...     '[[schedule]]\\nat = 20\\nweather = "dusk"\\nfade = 10\\n[criteria]\\nmin_miou = 0.3\\n')
    >>> scenario = load_scenario(folder / "dusk.toml")
    >>> scenario.name, scenario.schedule(), scenario.domains
    ('dusk', Schedule('dusk': clear@oldtown:20, dusk@oldtown:20~10), ['clear@oldtown', 'dusk@oldtown'])
    >>> _ = (folder / "bad.toml").write_text('frames = 40\\nseeds = [101001]\\ntrafic = 2\\n')
    >>> load_scenario(folder / "bad.toml")
    Traceback (most recent call last):
    ...
    stream.scenarios.ScenarioError: .../bad.toml:3: unknown key 'trafic'; valid keys: closed_loop, config, criteria, description, frames, name, schedule, seeds, short, student, world
"""
from __future__ import annotations

import json
import logging
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sim.schedule import Schedule, Segment
from sim.seeds import training_use
from sim.towns import TOWN_NAMES
from sim.weather import WEATHER_NAMES
from sim.world import SimConfig

log = logging.getLogger(__name__)

TOP_KEYS = ("name", "description", "frames", "seeds", "short", "closed_loop", "student", "world", "schedule",
            "criteria", "config")
STUDENT_KEYS = ("weights", "learn")
SCHEDULE_KEYS = ("at", "weather", "town", "fade")
WORLD_KEYS = tuple(f.name for f in fields(SimConfig) if f.name not in ("town", "weather"))
CRITERIA: dict[str, str] = {  # name -> what it bounds
    "min_miou": "the student's mIoU against the ground truth, overall (all) and per domain",
    "max_drift_delay": "frames from a domain change to its detection (a missed change fails)",
    "max_teacher_rate": "the fraction of frames sent to the teacher",
    "max_forgetting": "mIoU lost on a returning domain: its first visit's last frames minus the return's first frames",
    "min_robust_miou": "the student's mIoU under the worst PGD radius on the robustness frames",
    "max_lane_departures": "times the ego's centre left its lane (closed loop)",
    "max_seconds_off_road": "seconds with a wheel past the kerb or on the median (closed loop)",
    "min_car_clearance_m": "the smallest gap between the ego and another car, metres (closed loop)",
}
CLOSED_LOOP_CRITERIA = ("max_lane_departures", "max_seconds_off_road", "min_car_clearance_m")


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class ScheduleEntry:
    """From frame ``at`` on, ``weather`` in ``town`` (a ``fade`` > 0 blends the weather in)."""

    at: int
    weather: str
    town: str
    fade: int = 0


@dataclass(frozen=True)
class Scenario:
    """One checked scenario file (module docstring)."""

    path: Path
    name: str
    description: str
    frames: int
    seeds: tuple[int, ...]
    entries: tuple[ScheduleEntry, ...]
    short: bool = False
    closed_loop: bool = False
    weights: str = "default"  # default | none | an absolute path
    learn: bool = True
    world: dict[str, Any] = field(default_factory=dict)
    criteria: dict[str, Any] = field(default_factory=dict)  # min_miou: {"all"|domain: value}; others: a number
    config: dict[str, Any] = field(default_factory=dict)  # "section.key" -> value
    weights_line: int = 1  # the line of student.weights (a student that does not load is reported there)

    def schedule(self) -> Schedule:
        """The :class:`~sim.schedule.Schedule` of the entries over ``frames``."""
        segments = []
        for entry, following in zip(self.entries, [*self.entries[1:], None]):
            end = following.at if following is not None else self.frames
            segments.append(Segment(entry.weather, entry.town, end - entry.at, ramp=entry.fade))
        return Schedule(segments, name=self.name)

    @property
    def domains(self) -> list[str]:
        """The domain tags the stream visits, in order of first appearance."""
        seen: list[str] = []
        for entry in self.entries:
            tag = f"{entry.weather}@{entry.town}"
            if tag not in seen:
                seen.append(tag)
        return seen

    def overrides(self) -> list[str]:
        """The run settings the scenario implies, as ``--set`` takes them (before ``[config]``)."""
        out = [f"run.frames={self.frames}", f"student.weights={self.weights}",
               f"learner.frozen={'false' if self.learn else 'true'}",
               f"run.closed_loop={'true' if self.closed_loop else 'false'}"]
        out += [f"sim.{key}={value}" for key, value in self.world.items()]
        out += [f"{key}={_setting(value)}" for key, value in self.config.items()]
        return out


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class _Lines:
    """Where each key of a TOML file is written: a line number for (table path, key)."""

    HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.\-@]+)\s*=""")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        table: tuple[Any, ...] = ()
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self.HEADER.match(line)
            if header:
                name = header.group(2).strip()
                if header.group(1) == "[[":
                    counts[name] = counts.get(name, -1) + 1
                    table = (name, counts[name])
                else:
                    parts = tuple(part.strip().strip("\"'") for part in name.split("."))
                    table = (parts[0], counts[parts[0]], *parts[1:]) if parts[0] in counts else parts
                self.lines.setdefault(table, number)
                continue
            key = self.KEY.match(line)
            if key:
                self.lines.setdefault((*table, key.group(1).strip("\"'")), number)

    def of(self, *path: Any) -> int:
        """The line of ``path`` (a table's path, then a key), else of the nearest enclosing table; 1 when unknown."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


class _Reader:
    """Checks one parsed file, raising errors that name the file and the line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def fail(self, where: tuple[Any, ...], message: str) -> ScenarioError:
        return ScenarioError(f"{self.path}:{self.lines.of(*where)}: {message}")

    def keys(self, table: dict[str, Any], valid: tuple[str, ...], where: tuple[Any, ...], what: str = "key") -> None:
        for key in table:
            if key not in valid:
                label = f" in [{'.'.join(str(p) for p in where if not isinstance(p, int))}]" if where else ""
                raise self.fail((*where, key), f"unknown {what} {key!r}{label}; valid {what}s: {', '.join(sorted(valid))}")

    def integer(self, value: Any, where: tuple[Any, ...], name: str, low: int = 0) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise self.fail(where, f"{name} must be an int >= {low}, got {value!r}")
        return value

    def number(self, value: Any, where: tuple[Any, ...], name: str, low: float | None = None,
               high: float | None = None) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or (low is not None and value < low) \
                or (high is not None and value > high):
            span = f" in [{low}, {high}]" if high is not None else f" >= {low}" if low is not None else ""
            raise self.fail(where, f"{name} must be a number{span}, got {value!r}")
        return float(value)

    def boolean(self, value: Any, where: tuple[Any, ...], name: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"{name} must be true or false, got {value!r}")
        return value

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail((key,), f"{key} must be a table ([{key}]), got {type(value).__name__}")
        return value


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file (module docstring); :class:`ScenarioError` on any mistake."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read the scenario file: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = getattr(error, "lineno", None) or _line_in_message(str(error), text)
        raise ScenarioError(f"{path}:{line}: not valid TOML: {error}") from None
    reader = _Reader(path, text)
    reader.keys(data, TOP_KEYS, ())
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.@\-]+", name):
        raise reader.fail(("name",), f"name must be letters, digits and _ . @ -, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise reader.fail(("description",), f"description must be a string, got {description!r}")
    if "frames" not in data:
        raise reader.fail((), "frames is missing: the stream's length in frames")
    frames = reader.integer(data["frames"], ("frames",), "frames", low=1)
    seeds = _seeds(reader, data)
    short = reader.boolean(data.get("short", False), ("short",), "short")
    closed_loop = reader.boolean(data.get("closed_loop", False), ("closed_loop",), "closed_loop")
    student = reader.table(data, "student")
    reader.keys(student, STUDENT_KEYS, ("student",))
    weights = _weights(reader, student.get("weights", "default"), path)
    learn = reader.boolean(student.get("learn", True), ("student", "learn"), "student.learn")
    world = _world(reader, reader.table(data, "world"))
    entries = _entries(reader, data, frames)
    domains = []
    for entry in entries:
        tag = f"{entry.weather}@{entry.town}"
        if tag not in domains:
            domains.append(tag)
    criteria = _criteria(reader, reader.table(data, "criteria"), domains, closed_loop)
    if "max_drift_delay" in criteria and len(domains) < 2:
        raise reader.fail(("criteria", "max_drift_delay"), "criteria.max_drift_delay needs a domain change; this "
                                                           "schedule stays in one domain")
    if "max_forgetting" in criteria and not returning_domains(entries):
        raise reader.fail(("criteria", "max_forgetting"), "criteria.max_forgetting needs a domain the schedule returns "
                                                          "to; this schedule visits each domain once")
    config = _config(reader, reader.table(data, "config"))
    scenario = Scenario(path=path, name=name, description=description, frames=frames, seeds=seeds, entries=entries,
                        short=short, closed_loop=closed_loop, weights=weights, learn=learn, world=world,
                        criteria=criteria, config=config, weights_line=reader.lines.of("student", "weights"))
    _check_settings(reader, scenario)
    return scenario


def _line_in_message(message: str, text: str) -> int:
    """The line a TOML error names ("at line N", or the end of the document: its last line)."""
    found = re.search(r"line (\d+)", message)
    if found:
        return int(found.group(1))
    return max(1, len(text.splitlines())) if "end of document" in message else 1


def _seeds(reader: _Reader, data: dict[str, Any]) -> tuple[int, ...]:
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise reader.fail(("seeds",) if "seeds" in data else (), f"seeds must be a non-empty list of world seeds, got {seeds!r}")
    for seed in seeds:
        reader.integer(seed, ("seeds",), "each seed")
        fitted = training_use(seed)
        if fitted is not None:
            raise reader.fail(("seeds",), f"seed {seed} is a world of {fitted} (sim.seeds): a model or threshold was "
                                          f"fitted on it; scenarios run on held-out worlds (SCENARIO_WORLDS 101000..101999)")
    if len(set(seeds)) != len(seeds):
        raise reader.fail(("seeds",), f"seeds repeat a world: {seeds}")
    return tuple(seeds)


def _weights(reader: _Reader, value: Any, path: Path) -> str:
    if not isinstance(value, str) or not value:
        raise reader.fail(("student", "weights"), f"student.weights must be default, none or a path, got {value!r}")
    if value in ("default", "none"):
        return value
    weights = Path(value).expanduser()
    if not weights.is_absolute():
        weights = (path.parent / weights).resolve()
    if weights.is_dir():  # a bundle (odistill export's folder): the PyTorch weights it carries
        try:
            name = json.loads((weights / "manifest.json").read_text()).get("models", {}).get("weights")
        except (OSError, ValueError) as error:
            raise reader.fail(("student", "weights"), f"student.weights: {weights} is a folder but not a bundle with a "
                                                      f"readable manifest.json ({error})") from None
        if not name:
            raise reader.fail(("student", "weights"), f"student.weights: the bundle {weights} carries no PyTorch "
                                                      f"weights (models.weights in its manifest)")
        weights = weights / name
    if not weights.is_file():
        raise reader.fail(("student", "weights"), f"student.weights: no such file {weights}")
    return str(weights)


def _world(reader: _Reader, world: dict[str, Any]) -> dict[str, Any]:
    reader.keys(world, WORLD_KEYS, ("world",))
    try:
        SimConfig(**world)
    except (TypeError, ValueError) as error:
        bad = next((key for key in world if key in str(error)), None)
        raise reader.fail(("world", bad) if bad else ("world",), f"[world]: {error}") from None
    return dict(world)


def _entries(reader: _Reader, data: dict[str, Any], frames: int) -> tuple[ScheduleEntry, ...]:
    raw = data.get("schedule")
    if not isinstance(raw, list) or not raw or not all(isinstance(entry, dict) for entry in raw):
        raise reader.fail(("schedule",), "schedule must be one or more [[schedule]] tables (at, weather, town, fade)")
    entries: list[ScheduleEntry] = []
    for i, entry in enumerate(raw):
        where = ("schedule", i)
        reader.keys(entry, SCHEDULE_KEYS, where)
        if "at" not in entry:
            raise reader.fail(where, f"schedule entry {i + 1} has no 'at' (the frame it starts at)")
        at = entry["at"]
        if not isinstance(at, int) or isinstance(at, bool):
            raise reader.fail((*where, "at"), f"schedule entry {i + 1}: at must be an int frame index, got {at!r}")
        if at < 0:
            raise reader.fail((*where, "at"), f"schedule entry {i + 1}: at = {at} is negative")
        if i == 0 and at != 0:
            raise reader.fail((*where, "at"), f"the first schedule entry must start at 0, got at = {at}")
        if at >= frames:
            raise reader.fail((*where, "at"), f"schedule entry {i + 1}: at = {at} is past the stream's end (frames = {frames})")
        if entries and at <= entries[-1].at:
            raise reader.fail((*where, "at"), f"schedule entry {i + 1} starts at {at}, not after entry {i} (at = "
                                              f"{entries[-1].at}): entries overlap; list them in time order")
        previous = entries[-1] if entries else None
        weather = entry.get("weather", previous.weather if previous else None)
        town = entry.get("town", previous.town if previous else None)
        if weather not in WEATHER_NAMES:
            raise reader.fail((*where, "weather"), f"schedule entry {i + 1}: unknown weather {weather!r}; valid: "
                                                   f"{', '.join(WEATHER_NAMES)}")
        if town not in TOWN_NAMES:
            raise reader.fail((*where, "town"), f"schedule entry {i + 1}: unknown town {town!r}; valid: {', '.join(TOWN_NAMES)}")
        fade = entry.get("fade", 0)
        if not isinstance(fade, int) or isinstance(fade, bool) or fade < 0:
            raise reader.fail((*where, "fade"), f"schedule entry {i + 1}: fade must be an int >= 0 (frames), got {fade!r}")
        if fade:
            if previous is None:
                raise reader.fail((*where, "fade"), "the first schedule entry cannot fade in: nothing to fade from")
            if town != previous.town or weather == previous.weather:
                raise reader.fail((*where, "fade"), f"schedule entry {i + 1} fades from {previous.weather}@{previous.town} "
                                                    f"to {weather}@{town}: a fade changes the weather within one town")
        entries.append(ScheduleEntry(at, weather, town, fade))
    for i, (entry, following) in enumerate(zip(entries, [*entries[1:], None])):
        end = following.at if following is not None else frames
        if entry.at + entry.fade > end:
            raise reader.fail(("schedule", i, "fade"), f"schedule entry {i + 1}: its fade ends at frame "
                                                       f"{entry.at + entry.fade}, after the next change at {end}: overlapping")
    return tuple(entries)


def _criteria(reader: _Reader, criteria: dict[str, Any], domains: list[str], closed_loop: bool) -> dict[str, Any]:
    reader.keys(criteria, tuple(CRITERIA), ("criteria",), what="criterion")
    out: dict[str, Any] = {}
    for name, value in criteria.items():
        where = ("criteria", name)
        if name == "min_miou":
            table = value if isinstance(value, dict) else {"all": value, **{domain: value for domain in domains}}
            for key, bound in table.items():
                if key != "all" and key not in domains:
                    raise reader.fail((*where, key), f"criteria.min_miou names domain {key!r}, which the schedule never "
                                                     f"visits; its domains: all, {', '.join(domains)}")
                reader.number(bound, (*where, key), f"criteria.min_miou.{key}", 0.0, 1.0)
            out[name] = {key: float(bound) for key, bound in table.items()}
            continue
        if name in CLOSED_LOOP_CRITERIA and not closed_loop:
            raise reader.fail(where, f"criteria.{name} is measured in closed loop only; set closed_loop = true")
        if name == "max_drift_delay" or name == "max_lane_departures":
            out[name] = reader.integer(value, where, f"criteria.{name}")
        elif name in ("max_teacher_rate", "max_forgetting", "min_robust_miou"):
            out[name] = reader.number(value, where, f"criteria.{name}", -1.0 if name == "max_forgetting" else 0.0, 1.0)
        else:
            out[name] = reader.number(value, where, f"criteria.{name}", 0.0)
    return out


def returning_domains(entries: tuple[ScheduleEntry, ...] | list[ScheduleEntry]) -> list[str]:
    """Domains the schedule comes back to after another domain.

    Example:
        >>> returning_domains([ScheduleEntry(0, "clear", "oldtown"), ScheduleEntry(5, "fog", "oldtown"),
        ...                    ScheduleEntry(9, "clear", "oldtown")])
        ['clear@oldtown']
    """
    tags = [f"{e.weather}@{e.town}" for e in entries]
    runs = [tag for i, tag in enumerate(tags) if i == 0 or tag != tags[i - 1]]
    back: list[str] = []
    for i, tag in enumerate(runs):
        if tag in runs[:i] and tag not in back:
            back.append(tag)
    return back


def _config(reader: _Reader, config: dict[str, Any]) -> dict[str, Any]:
    from stream.config import load_config

    flat: dict[str, Any] = {}
    where: dict[str, tuple[str, ...]] = {}
    for key, value in config.items():
        if isinstance(value, dict):  # [config.section] key = value
            for inner, item in value.items():
                flat[f"{key}.{inner}"] = item
                where[f"{key}.{inner}"] = ("config", key, inner)
        else:  # "section.key" = value
            flat[key] = value
            where[key] = ("config", key)
    for key, value in flat.items():
        if key in ("run.frames", "run.seed", "run.out", "run.source", "run.closed_loop", "run.runner"):
            raise reader.fail(where[key], f"[config] {key}: set by the scenario itself (frames, seeds, closed_loop) "
                                          f"or by sim-test (out, source, runner)")
        try:
            load_config(None, [f"{key}={_setting(value)}"])
        except ValueError as error:
            raise reader.fail(where[key], f"[config] {key}: {error}") from None
    return flat


def _check_settings(reader: _Reader, scenario: Scenario) -> None:
    """The scenario's settings together, as the run will load them."""
    from stream.config import load_config

    try:
        load_config(None, [*scenario.overrides(), "run.source=sim:tour"])
    except ValueError as error:
        raise reader.fail(("config",), f"the scenario's settings do not load: {error}") from None


def find_scenarios(paths: list[str | Path]) -> list[Path]:
    """The scenario files named: files as given, folders' ``*.toml`` (sorted); an empty or
    missing path is an error naming it."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files = sorted(path.glob("*.toml"))
            if not files:
                raise ScenarioError(f"{path}: no *.toml scenario files in this folder")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise ScenarioError(f"{path}: no such scenario file or folder")
    return found
