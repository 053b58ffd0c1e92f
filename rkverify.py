"""rkverify command line: `python rkverify.py run <recipe>` converts, verifies and reports."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from convert.faults import BAD_INPUT, FAILED, GATE_FAILED, PASSED, report_failure
from convert.signals import terminate_as_interrupt
from core.errors import RkverifyError
from core.workspace import cache_dir, calib_dir, models_dir, reports_dir
from verify.run import convert_all, run  # noqa: F401  (the library's API, used by tests)
from verify.samples import few_lines


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RkverifyError("command line", "--set", f"'{pair}' is not key=value",
                                "write FIELD=VALUE, e.g. --set quantization.dtype=w16a16i_dfp")
        overrides[key] = yaml.safe_load(value)
    return overrides


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port (1-65535)")
    return int(text)


RAY_HELP = ("run {units} as Ray tasks: on a cluster (ADDRESS, e.g. ray://head:10001; every node needs the project "
            "and the data at the same paths) or on a Ray instance started on this machine (no ADDRESS)")


def parse_grid(pairs: list[str]) -> dict[str, list[object]]:
    grid = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not values:
            raise RkverifyError("command line", "--grid", f"'{pair}' is not FIELD=V1,V2,...",
                                "write e.g. --grid quantization.algorithm=normal,mmse")
        grid[key] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def run_sweep(args: argparse.Namespace) -> int:
    from verify.engines.workers import default_workers
    from verify.sweep import sweep

    folder = sweep(args.recipe, parse_grid(args.grid), args.reports, args.workers or default_workers(),
                   args.until_gates, args.ray, parse_overrides(args.overrides))
    summary = json.loads((folder / "sweep.json").read_text())
    for row in summary["rows"]:
        status = row.get("error") or row.get("skipped") or ("pass" if row["passed"] else "FAIL")
        print(f"{row['variant']} {row['fields']}: {status}")
    best = summary["best"]
    print(f"best: {best['variant']} {' '.join(best['set_lines'])}" if best else "best: none passes the gates")
    print(f"sweep: {folder / 'sweep.html'}")
    if not any("passed" in row for row in summary["rows"]):  # nothing measured: no gate could fail
        refused = all(row.get("refused") for row in summary["rows"])  # bad input, every one
        print(f"rkverify: {'error' if refused else 'failed'}: no variant could be measured (the rows above say why)",
              file=sys.stderr)
        return BAD_INPUT if refused else FAILED
    return PASSED if best else GATE_FAILED


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    """`init` and `inspect`: a user's own model file (rkverify_init.py)."""
    init_cmd = sub.add_parser("init", help="write a recipe for a model file from its graph (guesses marked)")
    init_cmd.add_argument("model", type=Path, help=".onnx, frozen .pb, float .tflite or MXNet -symbol.json")
    init_cmd.add_argument("--name", help="recipe name (default: from the file name)")
    init_cmd.add_argument("--target", default="rk3588", metavar="PLATFORM", help="target platform (default rk3588)")
    init_cmd.add_argument("--out", type=Path, help="where to write it (default convert/recipes/<name>.yaml)")
    init_cmd.add_argument("--no-measure", dest="measure", action="store_false",
                          help="do not measure the preprocessing on photos (leave it marked as guessed)")
    inspect_cmd = sub.add_parser("inspect", help="print a model file's inputs, outputs and ops; writes nothing")
    inspect_cmd.add_argument("model", type=Path)
    inspect_cmd.add_argument("--toolkit", action="store_true",
                             help="also build it in rknn-toolkit2 (float16) and list the ops it puts on the CPU")
    inspect_cmd.add_argument("--target", default="rk3588", metavar="PLATFORM", help="platform for --toolkit")


def model_command(args: argparse.Namespace) -> int:
    from convert.model_facts import read_model
    from core.recipe import RECIPES_DIR
    from rkverify_init import init, inspect_lines, toolkit_lines

    if args.command == "inspect":
        print("\n".join(inspect_lines(read_model(args.model))), flush=True)
        if args.toolkit:
            print("\n".join(toolkit_lines(args.model, args.target)))
        return PASSED
    path, draft = init(args.model, args.name, args.target, args.out, args.measure)
    print(f"recipe: {path} (task {draft.task}; {len(draft.guessed)} guessed fields: "
          f"{', '.join(draft.guessed) or 'none'})")
    target = draft.name if path.resolve() == (RECIPES_DIR / f"{draft.name}.yaml").resolve() else path
    print(f"run it: tox -e convert-{draft.name}   (or: python rkverify.py run {target})" if target == draft.name
          else f"run it: python rkverify.py run {target}   (in convert/recipes/ it would run as tox -e convert-<name>)")
    return PASSED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rkverify", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="convert a recipe, run float vs quantized, write the report")
    run_cmd.add_argument("recipe", help="recipe name (convert/recipes/<name>.yaml) or a path to a .yaml")
    run_cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                         help="override a recipe field, e.g. quantization.calibration.size=8")
    run_cmd.add_argument("--target", metavar="PLATFORM", help="run the quantized model on this board (e.g. rk3588)")
    run_cmd.add_argument("--device-id", help="adb serial of the board (see 'adb devices')")
    run_cmd.add_argument("--reports", type=Path, default=reports_dir(), help="where run folders go")
    run_cmd.add_argument("--workers", type=int, metavar="N",
                         help="worker processes for dataset-sized work (default: one per core)")
    run_cmd.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help=RAY_HELP.format(
        units="the face pass's image shards (--workers of them)"))
    run_cmd.add_argument("--fresh", action="store_true",
                         help="build and measure again even when an unchanged run can be reused (README, \"Reused runs\")")
    render_cmd = sub.add_parser("render", help="re-render report.html of a run from its data")
    render_cmd.add_argument("run_dir", type=Path)
    view_cmd = sub.add_parser("view", help="open the canonical ONNX (or the .rknn) in Netron, on 127.0.0.1 only")
    view_cmd.add_argument("target", help="recipe name or .yaml, or a run folder (reports/<recipe>/<run-id>)")
    view_cmd.add_argument("--rknn", action="store_true", help="the built .rknn instead of the float ONNX")
    view_cmd.add_argument("--port", type=port_number, help="port to listen on (default: a free one, 8080 first)")
    sweep_cmd = sub.add_parser("sweep", help="run every combination of recipe fields, compare, name the best")
    sweep_cmd.add_argument("recipe", help="recipe name or path (its sweep: block is the default grid)")
    sweep_cmd.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                           help="values to try for a recipe field, e.g. quantization.algorithm=normal,mmse")
    sweep_cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                           help="override a field in every variant")
    sweep_cmd.add_argument("--until-gates", action="store_true", default=None,
                           help="cheapest variants first; stop at the first that passes the gates")
    sweep_cmd.add_argument("--workers", type=int, metavar="N", help="variants run at once (default: one per core)")
    sweep_cmd.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                           help=RAY_HELP.format(units="the variants"))
    sweep_cmd.add_argument("--reports", type=Path, default=reports_dir(), help="where sweep folders go")
    clean_cmd = sub.add_parser("clean", help="list (or, with --apply, remove) old runs, hybrid variants, caches and "
                               "leftovers of killed runs")
    clean_cmd.add_argument("--keep", type=int, default=5, metavar="N", help="runs (and sweeps) kept per recipe (default 5)")
    clean_cmd.add_argument("--only", action="append", choices=("runs", "hybrid", "caches", "leftovers"),
                           help="only these kinds (repeat it; default: all)")
    clean_cmd.add_argument("--apply", action="store_true", help="remove them (default: a dry run that lists them)")
    clean_cmd.add_argument("--reports", type=Path, default=reports_dir(), help="the reports folder")
    add_model_commands(sub)
    args = parser.parse_args(argv)
    terminate_as_interrupt()
    try:
        return command(args)
    except (Exception, KeyboardInterrupt) as exc:  # every ending gets its exit code and one line, no traceback
        return report_failure(exc, error_log(args))


def error_log(args: argparse.Namespace) -> Path:
    """Where a failed command writes its traceback: beside the run's reports."""
    if args.command == "render":
        return args.run_dir / "last-error.log"
    if args.command in ("view", "clean", "init", "inspect"):
        return reports_dir() / "last-error.log"
    return args.reports / Path(args.recipe).stem.removeprefix("convert-") / "last-error.log"


def command(args: argparse.Namespace) -> int:
    if args.command == "render":
        if not (args.run_dir / "metrics.json").is_file():
            problem = "has no metrics.json" if args.run_dir.is_dir() else "does not exist"
            raise RkverifyError(args.run_dir, "", f"run folder {problem}",
                                "give a run folder, reports/<recipe>/<run-id>/ (see reports/index.html)")
        from verify.report.run_report import render_report

        print(render_report(args.run_dir))
        return PASSED
    if args.command == "view":
        from verify.report.netron_view import model_to_view, serve

        serve(model_to_view(args.target, args.rknn), args.port)
        return PASSED
    if args.command == "sweep":
        return run_sweep(args)
    if args.command == "clean":
        from verify.clean import CATEGORIES, clean

        print("\n".join(clean(args.reports, models_dir(), calib_dir(), cache_dir(), args.keep,
                               tuple(args.only or CATEGORIES), args.apply)))
        return PASSED
    if args.command in ("init", "inspect"):
        return model_command(args)
    overrides = parse_overrides(args.overrides)
    if args.target:
        overrides |= {"target.platform": args.target, "target.runtime": "board", "target.device_id": args.device_id}
    run_dir = run(args.recipe, overrides, args.reports, args.workers, ray_address=args.ray, fresh=args.fresh)
    from verify.results import RunResults

    results = RunResults.read(run_dir)
    for gate in results.gates:
        if gate.skipped:
            print(f"gate {gate.gate}: skipped, {gate.skipped}")
            continue
        status = "pass" if gate.passed else "FAIL"
        op = "<=" if gate.gate.startswith("max_") else ">="
        print(f"gate {gate.gate}: {gate.value:.4f} ({op} {gate.threshold}) {status}")
    for line in few_lines(results.metrics):
        print(f"warning: {line}")
    print(f"report: {run_dir / 'report.html'}")
    return PASSED if results.passed else GATE_FAILED


if __name__ == "__main__":
    sys.exit(main())
