"""``odistill``: the command line.

    odistill run                      # the default simulator tour, in-process
    odistill run --runner ray --frames 1200 --set scheduler.max_rate=0.4
    odistill train-teacher            # re-make perception/weights/sim_teacher.safetensors
    odistill train-student            # re-make the clear-day student's starting weights
    odistill train-teacher-depth      # re-make perception/weights/sim_teacher_depth.safetensors
    odistill train-student --steps 200 --set student_training.frames=400 --device cpu
    odistill size --budget-ms 8      # the student sizing table; the most accurate student inside 8 ms
    odistill sim-test scenarios/ --junit runs/sim-test.xml   # the scenario suite, pass/fail, JUnit XML
    odistill export --checkpoint runs/latest/checkpoints/learner_3600.safetensors --out runs/export
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

log = logging.getLogger("odistill")


def _three(value: float | None) -> str:
    """A figure with three decimals, or "n/a" where the table has none."""
    return "n/a" if value is None else f"{value:.3f}"


def _run_parser(sub: Any) -> None:
    from perception.teachers import teacher_usage
    from stream.sources import source_usage
    from stream.sources.labelmaps import LABEL_MAPS

    p = sub.add_parser("run", help="run online distillation on a stream (default: the simulator tour)")
    p.add_argument("--source", help=f"{source_usage()}; log options as ?key=value&..., e.g. "
                                    f"?label_map=NAME ({', '.join(sorted(LABEL_MAPS))}) (default sim:tour)")
    p.add_argument("--teacher", help=f"{teacher_usage()} (default sim)")
    p.add_argument("--frames", type=int, help="frames to process")
    p.add_argument("--seed", type=int, help="seed of everything stochastic, the sim's world too (default: a held-out "
                                            "world, sim.seeds.DEFAULT_RUN_SEED)")
    p.add_argument("--runner", choices=["local", "ray"], help="in-process (local) or Ray actors")
    p.add_argument("--address", help="Ray: join this cluster (auto | HOST:PORT | ray://HOST:PORT) instead of "
                                     "starting one; implies --runner ray")
    p.add_argument("--out", help="run folder (default runs/latest)")
    p.add_argument("--config", help="a TOML file of [section] key = value")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config value")
    p.add_argument("--realtime", action="store_true", help="pace a recorded log by its timestamps")
    p.add_argument("--label-map", help="evaluate in another label set: camvid (then the ground truth must be CamVid ids: "
                                       "a source label_map=camvid-raw, or none); default the canonical set")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resolve(args: argparse.Namespace):
    """The run's config and where its values came from (see stream.config.load_config_with_origins)."""
    from stream.config import load_config_with_origins

    overrides = list(args.set)
    for flag, key in (("source", "run.source"), ("frames", "run.frames"), ("seed", "run.seed"), ("runner", "run.runner"),
                      ("out", "run.out"), ("teacher", "teacher.spec"), ("label_map", "run.label_map")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "realtime", False):
        overrides.append("run.realtime=true")
    if getattr(args, "address", None):
        overrides += [f"cluster.address={args.address}", "run.runner=ray"]
    return load_config_with_origins(args.config, overrides)


def _file_limits(config: Any, origins: dict[str, str]) -> list[str]:
    """Lines naming the settings a config file imposes that silently shorten a run (the frame limit)."""
    from stream.config import COMMAND_LINE

    origin = origins.get("run.frames")
    if origin is None or origin == COMMAND_LINE:
        return []
    return [f"run.frames={config.run.frames} from {origin} (a longer source is cut there; --frames N to change)"]


def _robust_lines(summary: dict[str, Any], f: Any) -> list[str]:
    """The robustness line under the table: clean, PGD and Kornia mIoU on the robustness frames
    (against the ground truth, else the teacher's labels), and what the views cost."""
    if not summary.get("robust_frames"):
        return []
    truth = summary.get("student_clean_miou_on_robust_frames") is not None
    suffix, against = ("", "ground truth") if truth else ("_vs_teacher", "teacher labels")
    pgd = " ".join(f"{radius} {f(value)}" for radius, value in (summary.get(f"student_robust_miou{suffix}") or {}).items())
    corrupt = summary.get(f"student_corrupt_miou{suffix}") or {}
    presets = [v for k, v in corrupt.items() if k != "worst_of_k" and v is not None]
    line = (f"robustness on {summary['robust_frames']} frames (mIoU vs {against}): clean "
            f"{f(summary.get('student_clean_miou' + suffix + '_on_robust_frames'))} · PGD-10 {pgd} · Kornia presets mean "
            f"{f(sum(presets) / len(presets)) if presets else '-'}, worst-of-k {f(corrupt.get('worst_of_k'))}")
    costs = summary.get("robustness") or {}
    if costs.get("view_frames"):
        line += (f" · views on {costs['view_frames']} frames, {costs['view_ms_per_view_frame']:.0f} ms each, "
                 f"{costs['student_syncs']} student syncs ({costs['student_sync_bytes'] / 1e6:.1f} MB)")
    return [line]


def _table(summary: dict[str, Any]) -> str:
    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [f"{'':<18}{'':>8}{'':>9}{'student mIoU':>14}{'-- on the teacher frames --':>36}",
             f"{'domain':<18}{'frames':>8}{'teacher':>9}{'all frames':>14}{'student':>10}{'teacher':>10}{'ratio':>8}{'stu vs tea':>12}"]
    rows = [(name, d["frames"], d["teacher_frames"], d) for name, d in summary["per_domain"].items()]
    rows.append(("all", summary["frames"], summary["teacher_calls"], summary))
    for name, frames, teacher_frames, d in rows:
        lines.append(f"{name:<18}{frames:>8}{teacher_frames:>9}{f(d['student_miou']):>14}"
                     f"{f(d['student_miou_on_teacher_frames']):>10}{f(d['teacher_miou_on_teacher_frames']):>10}"
                     f"{f(d['student_teacher_ratio']):>8}{f(d['student_vs_teacher_miou']):>12}")
    lines.extend(_robust_lines(summary, f))
    drift = summary.get("drift", {})
    lines.append(
        f"teacher rate {summary['teacher_rate']:.3f} · drift events {len(summary['drift_events'])} "
        f"(true shifts {len(summary['true_shifts'])}, detected {drift.get('detected', 0)}, false {drift.get('false_events', 0)}) · "
        f"{summary['fps']:.1f} frames/s · {summary['wall_s']:.0f} s · peak RSS {summary['peak_rss_mb']:.0f} MB"
    )
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    config, origins = _resolve(args)
    for line in _file_limits(config, origins):
        print(line, flush=True)
    progress = not args.no_progress and sys.stderr.isatty()
    if config.run.runner == "ray":
        from stream.actors import run_ray

        summary = run_ray(config, progress=progress)
    else:
        from stream.local import run_local

        summary = run_local(config, progress=progress)
    print(_table(summary))
    if summary.get("label_warning"):
        print(f"WARNING: {summary['label_warning']}")
    print(f"run folder: {config.run.out}")
    return 130 if summary.get("interrupted") else 0


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train-teacher", help="train the simulator teacher (seeded, reproducible)")
    p.add_argument("--out", default=None, help="weights file (default: the shipped perception/weights/sim_teacher.safetensors)")
    p.add_argument("--steps", type=int, default=None, help="same as --set teacher_training.steps=N")
    p.add_argument("--seed", type=int, default=0, help="training seed (init, batches); the worlds are "
                                                       "sim.seeds.TEACHER_TRAINING's first teacher_training.worlds")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--config", help="a TOML file with a [teacher_training] table")
    p.add_argument("--set", action="append", default=[], metavar="teacher_training.KEY=VALUE",
                   help="override one teacher_training value (KEY=VALUE also works)")
    s = sub.add_parser("train-student", help="distil the starting student offline on clear-day frames of one town")
    s.add_argument("--out", default=None, help="weights file (default: the shipped student_clear_oldtown.safetensors)")
    s.add_argument("--teacher", default="sim", help="teacher spec that labels the frames")
    s.add_argument("--source", default="sim:clear", help="frames to distil on (sim:clear, or video:PATH for a log)")
    s.add_argument("--steps", type=int, default=None, help="same as --set student_training.steps=N")
    s.add_argument("--seed", type=int, default=0, help="training seed (init, batches); with a sim source it also picks "
                                                       "the block of sim.seeds.STUDENT_TRAINING worlds (0..9)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    s.add_argument("--config", help="a TOML file with a [student_training] table")
    s.add_argument("--set", action="append", default=[], metavar="student_training.KEY=VALUE",
                   help="override one student_training value (KEY=VALUE also works)")
    d = sub.add_parser("train-teacher-depth", help="train the sim teacher's depth head on its frozen features "
                                                   "(seeded, reproducible)")
    d.add_argument("--out", default=None, help="weights file (default: the shipped "
                                               "perception/weights/sim_teacher_depth.safetensors)")
    d.add_argument("--steps", type=int, default=None, help="same as --set teacher_depth.steps=N")
    d.add_argument("--seed", type=int, default=0, help="training seed (init, batches)")
    d.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    d.add_argument("--config", help="a TOML file with a [teacher_depth] table")
    d.add_argument("--set", action="append", default=[], metavar="teacher_depth.KEY=VALUE",
                   help="override one teacher_depth value (KEY=VALUE also works)")
    e = sub.add_parser("eval-teacher", help="score a teacher against simulator ground truth per domain")
    e.add_argument("--teacher", default="sim")
    e.add_argument("--frames", type=int, default=1200)
    e.add_argument("--seed", type=int, default=None, help="world seed (default: the first TEACHER_EVALUATION world of "
                                                          "sim.seeds, never trained on)")
    e.add_argument("--schedule", default="all")
    e.add_argument("--device", default="auto")


def _size_parser(sub: Any) -> None:
    z = sub.add_parser("size", help="print the student sizing table and name the most accurate student inside a "
                                    "latency budget")
    z.add_argument("--budget-ms", type=float, required=True, help="milliseconds per frame the student may take")
    z.add_argument("--size", default="256x128", help="input WIDTHxHEIGHT the budget is for (the table is measured at "
                                                     "256x128 and 480x352; other sizes need --measure)")
    z.add_argument("--table", default=None, help="a sizing table (default: the shipped "
                                                 "perception/weights/student_sizing.json, written by bench/ceiling.py)")
    z.add_argument("--measure", action=argparse.BooleanOptionalAction, default=True,
                   help="re-time every student on this machine (default), or trust the table's milliseconds")
    z.add_argument("--threads", type=int, default=1, help="torch threads when timing (1: as a run predicts)")
    z.add_argument("--json", action="store_true", help="print the rows and the choice as one JSON object")


def cmd_size(args: argparse.Namespace) -> int:
    import dataclasses

    from perception import sizing

    if args.budget_ms <= 0:
        raise sizing.SizingError(f"--budget-ms must be > 0, got {args.budget_ms:g}")
    if args.threads < 1:
        raise sizing.SizingError(f"--threads must be >= 1, got {args.threads}")
    sizing.parse_size(args.size)
    rows, provenance = sizing.load_table(args.table or sizing.SIZING_TABLE)
    sizes = tuple(dict.fromkeys([*sizing.SIZES, args.size]))
    if args.measure:
        timed = []
        for row in rows:
            ms = dict(row.ms, **{args.size: sizing.measure_latency_ms(row.net, args.size, threads=args.threads)})
            macs = dict(row.macs, **{args.size: float(sizing.macs(row.net, args.size))})
            timed.append(dataclasses.replace(row, ms=ms, macs=macs))
        rows = timed
    print(sizing.format_table(rows, sizes))
    where = "this machine" if args.measure else f"the table ({provenance.get('bench', 'unknown bench')})"
    print(f"ms at {args.size}: {where}; mIoU: {provenance.get('bench', 'the table')} on world {provenance.get('world', '?')}")
    try:
        chosen = sizing.choose_student(rows, args.budget_ms, args.size)
    except sizing.NoStudentFits as error:
        print(f"odistill: {error}", file=sys.stderr)
        return 1
    print(f"within {args.budget_ms:g} ms at {args.size}: student.net={chosen.net} "
          f"({chosen.ms[args.size]:.2f} ms, online mIoU {_three(chosen.online_miou)}, ceiling {_three(chosen.ceiling_miou)})")
    if args.json:
        print(json.dumps({"budget_ms": args.budget_ms, "size": args.size, "chosen": chosen.net,
                          "rows": [dataclasses.asdict(r) for r in rows]}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from stream import training

    if args.command == "train-teacher-depth":
        from stream import depth_training

        overrides = list(args.set) + ([f"teacher_depth.steps={args.steps}"] if args.steps is not None else [])
        config = depth_training.teacher_depth_config(args.config, overrides)
        result = depth_training.train_teacher_depth(config, out=args.out, seed=args.seed, device=args.device)
        print(json.dumps(result, indent=2))
        return 0

    section = "teacher_training" if args.command == "train-teacher" else "student_training"
    overrides = list(args.set) + ([f"{section}.steps={args.steps}"] if args.steps is not None else [])
    if args.command == "train-teacher":
        config = training.teacher_training_config(args.config, overrides)
        result = training.train_teacher(config, out=args.out, seed=args.seed, device=args.device)
    else:
        config = training.student_training_config(args.config, overrides)
        result = training.train_student(config, out=args.out, teacher=args.teacher, source=args.source,
                                        seed=args.seed, device=args.device)
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval_teacher(args: argparse.Namespace) -> int:
    from stream import training

    seed = training.EVAL_SEED if args.seed is None else args.seed
    result = training.evaluate_on_sim(args.teacher, frames=args.frames, seed=seed, schedule=args.schedule, device=args.device)
    print(json.dumps(result, indent=2))
    return 0


def _sim_test_parser(sub: Any) -> None:
    t = sub.add_parser("sim-test", help="run scenario suites (scenarios/*.toml) with pass/fail criteria; JUnit XML")
    t.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders of them")
    t.add_argument("--junit", metavar="FILE", help="write JUnit XML (one test case per scenario) here")
    t.add_argument("--out", default="runs/sim-test", help="suite folder: one run folder per scenario and seed, "
                                                          "results.json (default runs/sim-test)")
    t.add_argument("--runner", choices=["local", "ray"], default="local",
                   help="local: one scenario after another; ray: scenarios as parallel Ray tasks")
    t.add_argument("--address", help="ray: join this cluster (auto | HOST:PORT | ray://HOST:PORT); implies --runner ray")
    t.add_argument("--short", action="store_true", help="only the scenarios marked short = true")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one run setting in every scenario (after the scenario's own)")


def _export_parser(sub: Any) -> None:
    x = sub.add_parser("export", help="export a student to ONNX and TorchScript (camera bytes in, logits and labels "
                                      "out), parity-checked against PyTorch, with manifest.json")
    source = x.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a learner checkpoint (runs/X/checkpoints/learner_N.safetensors): its "
                                             "predictor, checked on its replay frames")
    source.add_argument("--weights", help="a student weights file (or default): checked on --source's first frames")
    x.add_argument("--source", help="--weights: the frames to check parity on (default sim:tour)")
    x.add_argument("--out", required=True, help="the export folder")
    x.add_argument("--formats", default="onnx,torchscript", help="onnx, torchscript or both (default both)")
    x.add_argument("--model-size", default="256x128", help="WxH the network runs at inside the graph (default 256x128)")
    x.add_argument("--camera", help="WxH of the frames the graph takes (default: the parity frames' size)")
    x.add_argument("--config", help="the run's TOML file (student.net and the like)")
    x.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")


def _size(text: str | None, flag: str) -> tuple[int, int] | None:
    if text is None:
        return None
    from perception.export import ExportError

    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ExportError(f"{flag} must be WIDTHxHEIGHT (e.g. 256x128), got {text!r}")
    return int(width), int(height)


def cmd_export(args: argparse.Namespace) -> int:
    from perception.export import ExportConfig
    from stream.config import load_config
    from stream.export import export_from_checkpoint, export_from_weights

    overrides = list(args.set) + ([f"run.source={args.source}"] if args.source else [])
    config = load_config(args.config, overrides)
    export = ExportConfig(formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
                          model_size=_size(args.model_size, "--model-size"), camera_size=_size(args.camera, "--camera"))
    if args.checkpoint:
        out = export_from_checkpoint(config, args.checkpoint, args.out, export)
    else:
        out = export_from_weights(config, args.weights, args.out, export=export)
    manifest = json.loads((out / "manifest.json").read_text())
    for fmt, parity in manifest["parity"].items():
        print(f"{fmt:<12} {manifest['models'][fmt]:<12} argmax agreement {parity['agreement']:.5f} · max logit difference "
              f"{parity['max_logit_diff']:.2e} on {parity['frames']} frames")
    print(f"input {manifest['input']['shape']} uint8 RGB · manifest: {out / 'manifest.json'}")
    return 0


def _vehicle_parser(sub: Any) -> None:
    v = sub.add_parser("vehicle", help="the vehicle runtime: run the deployed student bundle with onnxruntime on a "
                                       "stream, swapping in new versions and rolling back unhealthy ones")
    where = v.add_mutually_exclusive_group(required=True)
    where.add_argument("--bundle", help="a bundle folder (manifest.json + student.onnx, as odistill export writes)")
    where.add_argument("--registry", help="a TUF registry: a folder or an http(s) URL (needs --root)")
    v.add_argument("--root", help="--registry: the trusted root.json the vehicle holds")
    v.add_argument("--cache", default="runs/vehicle-cache", help="--registry: where metadata and bundles are kept")
    v.add_argument("--source", default="sim:clear", help="the camera stream (default sim:clear)")
    v.add_argument("--frames", type=int, default=300, help="frames to run (default 300)")
    v.add_argument("--seed", type=int, default=100_000, help="the simulator's world (default 100000, held out)")
    v.add_argument("--budget-ms", type=float, default=100.0, help="a version slower than this (median) is rolled back")
    v.add_argument("--poll-every", type=int, default=50, help="frames between registry refreshes (default 50)")


def cmd_vehicle(args: argparse.Namespace) -> int:
    from stream.vehicle import BundleModel, VehicleConfig, VehicleRuntime, drive, open_vehicle_source

    config = VehicleConfig(budget_ms=args.budget_ms, poll_every=args.poll_every)
    if args.bundle:
        runtime = VehicleRuntime(config, BundleModel(args.bundle))
    else:
        from stream.vehicle import RegistryFetcher

        if not args.root:
            raise SystemExit("odistill vehicle: --registry needs --root (the trusted root.json)")
        fetch = RegistryFetcher(args.registry, args.root, args.cache)
        runtime = VehicleRuntime(config, fetch.start(), fetch=fetch, on_refused=fetch.mark_refused,
                                 on_healthy=fetch.mark_healthy)
    summary = drive(runtime, open_vehicle_source(args.source, args.frames, seed=args.seed), args.frames)
    print(f"vehicle: {summary['frames']} frames on v{summary['version']} · median {summary['frame_ms_median']:.1f} ms/frame · "
          f"{summary['swaps']} swaps (longest {summary['swap_ms_max']:.2f} ms) · {summary['rollbacks']} rollbacks")
    for event in summary["events"]:
        if event["kind"] != "swap":
            print(f"  frame {event['frame']}: {event['kind']}: {event.get('reason', '')}")
    return 0


def _registry_parsers(sub: Any) -> None:
    k = sub.add_parser("keys", help="signing keys for the registry")
    k_sub = k.add_subparsers(dest="keys_command", required=True)
    new = k_sub.add_parser("new", help="a new Ed25519 private key (PEM, mode 0600) and its public key beside it (.pub)")
    new.add_argument("path")
    r = sub.add_parser("registry", help="the TUF registry of student bundles: init, add, list, show, promote, rollback")
    r_sub = r.add_subparsers(dest="registry_command", required=True)
    init = r_sub.add_parser("init", help="a new registry folder (servable by any static file host)")
    init.add_argument("folder")
    init.add_argument("--key", help="one private key for every role")
    for role in ("root", "targets", "snapshot", "timestamp"):
        init.add_argument(f"--{role}-key", help=f"the {role} role's private key (default --key)")
    add = r_sub.add_parser("add", help="publish a bundle (a folder with manifest.json, or a .tar.gz) as a candidate")
    add.add_argument("folder")
    add.add_argument("bundle")
    add.add_argument("--reason", default="published")
    r_sub.add_parser("list", help="every bundle: version, stage, time").add_argument("folder")
    refresh = r_sub.add_parser("refresh", help="re-sign the short-lived metadata (schedule it daily)")
    refresh.add_argument("folder")
    refresh.add_argument("--root", action="store_true", help="also publish the next root version with a fresh expiry")
    show = r_sub.add_parser("show", help="one bundle: manifest summary, files, stage history")
    show.add_argument("folder")
    show.add_argument("version", type=int)
    promote = r_sub.add_parser("promote", help="move a bundle forward: approved, deployed or retired")
    promote.add_argument("folder")
    promote.add_argument("version", type=int)
    promote.add_argument("stage", choices=["approved", "deployed", "retired"])
    promote.add_argument("--reason", required=True)
    gate = r_sub.add_parser("gate", help="the promotion gate: approve a candidate only if its clean and robust mIoU on "
                                         "the gate set are within 0.5 points of the deployed version's and the "
                                         "scenario suite passes; the decision goes into its signed history")
    gate.add_argument("folder")
    gate.add_argument("version", type=int)
    gate.add_argument("--scenarios", help="a scenario folder (or file) the candidate must pass")
    gate.add_argument("--frames", type=int, default=48, help="gate-set frames (default 48)")
    gate.add_argument("--max-drop-points", type=float, default=0.5)
    gate.add_argument("--out", default="runs/gate", help="the scenario runs' folder")
    rollback = r_sub.add_parser("rollback", help="redeploy the previous deployment as a new, higher version")
    rollback.add_argument("folder")
    rollback.add_argument("--reason", required=True)


def cmd_keys(args: argparse.Namespace) -> int:
    from stream.registry import new_key

    print(f"{args.path}: Ed25519 key {new_key(args.path)} (public key in {args.path}.pub)")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from stream.registry import Registry

    command = args.registry_command
    if command == "gate":
        from stream.gate import GateConfig, run_gate

        decision = run_gate(args.folder, args.version, GateConfig(max_drop_points=args.max_drop_points, frames=args.frames),
                            scenarios=args.scenarios, out_dir=args.out)
        print(f"v{args.version}: {decision.text()}")
        return 0 if decision.approved else 1
    if command == "init":
        keys = {role: getattr(args, f"{role}_key") or args.key for role in ("root", "targets", "snapshot", "timestamp")}
        missing = [role for role, key in keys.items() if not key]
        if missing:
            raise SystemExit(f"odistill registry init: no key for {', '.join(missing)} (give --key or --ROLE-key)")
        registry = Registry.init(args.folder, keys)
        print(f"registry {args.folder}: vehicles trust {registry.root_path}")
        return 0
    registry = Registry(args.folder)
    if command == "add":
        info = registry.add_bundle(args.bundle, reason=args.reason)
        print(f"published v{info.version} ({info.stage})")
    elif command == "list":
        for info in registry.list():
            print(f"v{info.version:<5} {info.stage:<10} {info.created}  parent {info.parent}  {info.target}")
    elif command == "show":
        print(registry.show(args.version).describe())
    elif command == "promote":
        info = registry.promote(args.version, args.stage, args.reason)
        print(f"v{info.version} is {info.stage}")
    elif command == "rollback":
        info = registry.rollback(args.reason)
        print(f"v{info.version} deployed: the files of v{info.republishes}")
    elif command == "refresh":
        registry.refresh(root=args.root)
        print(f"registry {args.folder}: metadata re-signed{' (and a new root version)' if args.root else ''}")
    return 0


def cmd_sim_test(args: argparse.Namespace) -> int:
    import time

    from stream.simtest import load_suite, results_table, run_suite, write_junit, write_results

    runner = "ray" if args.address else args.runner
    started = time.perf_counter()
    scenarios, errors = load_suite(args.paths)
    if args.short:
        scenarios = [s for s in scenarios if s.short]
    if not scenarios and not errors:
        print("odistill sim-test: no scenario to run", file=sys.stderr)
        return 2
    results = run_suite(scenarios, args.out, runner=runner, address=args.address, overrides=args.set) if scenarios else []
    results = sorted(results + errors, key=lambda r: r.path)
    wall = time.perf_counter() - started
    print(results_table(results, wall))
    write_results(results, args.out, wall, runner)
    if args.junit:
        print(f"JUnit XML: {write_junit(results, args.junit)}")
    print(f"suite folder: {args.out}")
    return 0 if all(r.passed for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="odistill", description="online continual distillation for driving perception")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _train_parser(sub)
    _size_parser(sub)
    _sim_test_parser(sub)
    _export_parser(sub)
    _vehicle_parser(sub)
    _registry_parsers(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in ("vehicle", "keys", "registry"):  # before the training side's imports: no torch, no ray
        from stream.registry import RegistryError
        from stream.sources.base import SourceError
        from stream.vehicle import VehicleError

        command = {"vehicle": cmd_vehicle, "keys": cmd_keys, "registry": cmd_registry}[args.command]
        try:
            return command(args)
        except (VehicleError, SourceError, RegistryError) as error:  # (the runtime keeps its version on disk)
            print(f"odistill: error: {error}", file=sys.stderr)
            return 2
    from perception.device import DeviceError
    from perception.sizing import SizingError
    from perception.teachers import TeacherSpecError
    from perception.weights import CheckpointError
    from stream.config import ConfigError
    from stream.recorder import OutputError
    from perception.export import ExportError
    from stream.scenarios import ScenarioError
    from stream.sources.base import SourceError

    known = (ConfigError, SourceError, OutputError, CheckpointError, TeacherSpecError, DeviceError, SizingError,
             ScenarioError, ExportError)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "eval-teacher":
            return cmd_eval_teacher(args)
        if args.command == "size":
            return cmd_size(args)
        if args.command == "sim-test":
            return cmd_sim_test(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_train(args)
    except known as error:
        print(f"odistill: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("odistill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
