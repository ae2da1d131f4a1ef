"""The ``sweep`` and ``report`` subcommands. Ray, torch and matplotlib are imported inside
the handlers so that ``mbiapo --help`` stays fast and works without Ray."""

import sys
from pathlib import Path

from mbiapo.errors import MbiapoError
from mbiapo.paths import check_writable_file, check_writable_folder


def add_parsers(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of configs x seeds as Ray tasks",
                       description="Run every combination of the sweep file's grid and seeds "
                       "as one 'mbiapo train' process per Ray task, each in OUT/<values>_s<seed>"
                       " (output in its train.log). Re-running skips finished runs and resumes "
                       "interrupted ones. The file's keys: base (a --config file), overrides "
                       "(key=value for every run), grid (config key: [values]), seeds, steps; "
                       "see the README's 'Sweeps and reports'.")
    p.add_argument("sweep", type=Path, metavar="SWEEP.yaml")
    p.add_argument("--address", help="Ray cluster: 'auto' or ray://HOST:PORT (default: start "
                   "a local instance with this machine's CPUs); run folders must be on a "
                   "filesystem every node shares")
    p.add_argument("--cpus-per-run", type=int, default=1, metavar="C",
                   help="CPUs (and torch threads) per run")
    p.add_argument("--num-cpus", type=int, metavar="N",
                   help="CPUs of the local Ray instance (default: all of this machine's)")
    p.add_argument("--out", type=Path, help="sweep folder (default: runs/<sweep file name>)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = sub.add_parser("report", help="learning curves and final returns of run folders",
                       description="Read every run folder (config.yaml + metrics.csv) under "
                       "DIR; draw evaluation return vs env steps, the IQM over seeds with its 95% "
                       "stratified-bootstrap CI, one panel per env and one line per method, "
                       "and a performance profile of final returns; print final IQM [CI], "
                       "mean ± std and updates/s per method and the probability of "
                       "improvement of each method over each other; write a per-seed CSV "
                       "(env, method, seed, step, return). With --page, rebuild a markdown "
                       "page's generated tables and figures instead.")
    p.add_argument("dir", type=Path, nargs="*", metavar="DIR", help="folders of run folders, "
                   "or tidy CSVs an earlier report wrote (results others can re-read); "
                   "several are read together")
    p.add_argument("--page", type=Path, help="markdown page (docs/results.md) whose blocks "
                   "'<!-- report SOURCE... [--out FIGURE] -->' ... '<!-- end report -->' "
                   "are rebuilt from their sources, paths relative to the current folder, "
                   "and whose figures are redrawn")
    p.add_argument("--out", type=Path, help="figure file (.png/.pdf/.svg; default "
                   "DIR/report.png); the profile and the CSV go beside it "
                   "(report-profile.png, report.csv)")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown "
                   "(IQM [95%% CI] at three steps, probability of improvement), as in "
                   "docs/results.md")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cmd_sweep(args) -> dict:
    from tqdm import tqdm

    from mbiapo import peer
    from mbiapo.sweep import check_cpus, load_sweep, plan_runs, require_ray, run_sweep

    require_ray()
    check_cpus(args.address, args.cpus_per_run, args.num_cpus)
    sweep = load_sweep(args.sweep)
    out = args.out or Path("runs") / sweep.path.stem
    check_writable_folder(out)
    runs = plan_runs(sweep, out, [str(Path(p).absolute()) if p.endswith(".py") else p
                                  for p in args.plugin])
    if sweep.peers and not peer.available():
        peers = [r for r in runs if r.args[0] == "peer"]
        print(f"mbiapo: {peer.MISSING}; its {len(peers)} runs are left out", file=sys.stderr)
        runs = [r for r in runs if r not in peers]
    count = {a: sum(r.action == a for r in runs) for a in ("start", "resume", "skip")}
    print(f"{len(runs)} runs in {out}: {count['start']} to start, {count['resume']} to "
          f"resume, {count['skip']} finished; each logs to its train.log", file=sys.stderr)
    bar = tqdm(total=count["start"] + count["resume"], desc="runs", unit="run",
               file=sys.stderr, dynamic_ncols=True)

    def on_done(result: dict) -> None:
        bar.update(1)
        detail = f": {result['error']}" if result["error"] else ""
        bar.write(f"{result['name']} {result['status']} in {result['seconds']:.0f} s{detail}",
                  file=sys.stderr)

    try:
        result = run_sweep(sweep, runs, out, args.address, args.cpus_per_run, args.num_cpus,
                           on_done)
    except KeyboardInterrupt:
        raise MbiapoError(f"interrupted; the runs saved checkpoints: 'mbiapo sweep "
                          f"{args.sweep} --out {out}' resumes them") from None
    finally:
        bar.close()
    failed = [r for r in result["runs"] if r["status"] == "failed"]
    result["table"] = _table(result)
    result["exit_code"] = 1 if failed else 0
    return result


def _table(result: dict) -> str:
    lines = [f"{'run':<44} {'status':<9} {'seconds':>8}  error"]
    lines += [f"{r['name']:<44} {r['status']:<9} {r['seconds']:>8.0f}  {r['error']}"
              for r in result["runs"]]
    if result["sum_run_s"]:
        lines.append(f"wall-clock {result['wall_s']:.0f} s for {result['sum_run_s']:.0f} s of "
                     f"runs: {result['speedup']:.2f}x parallel speed-up")
    return "\n".join(lines)


def cmd_report(args) -> dict:
    from mbiapo import report as reports

    if args.page is not None:
        if args.dir or args.out or args.markdown:
            raise MbiapoError("--page takes its sources and figures from the page; give no "
                              "DIR, --out or --markdown with it")
        result = reports.update_page(args.page, Path.cwd())
        result["table"] = (f"{args.page}: {result['blocks']} generated block"
                           f"{'s' * (result['blocks'] != 1)}, "
                           f"{'rewritten' if result['changed'] else 'unchanged'}; "
                           f"{len(result['figures'])} figures drawn")
        return result
    if not args.dir:
        raise MbiapoError("give the folders or tidy CSVs to report on, or --page PAGE")
    result = reports.report(*args.dir)
    first = args.dir[0]
    from_csv = all(path.is_file() for path in args.dir)
    figure = args.out or (first.with_suffix(".png") if first.is_file() else first / "report.png")
    reports.check_figure(figure)
    profile = reports.profile_path(figure)
    tidy = None if from_csv else figure.with_suffix(".csv")
    if tidy is not None:
        check_writable_file(tidy)
    result["out"] = str(reports.plot(result, figure))
    result["profile"] = str(reports.plot_profile(result, profile))
    if tidy is not None:
        result["csv"] = str(reports.write_tidy(result, tidy))
    result["table"] = reports.markdown(result) if args.markdown else reports.table(result)
    return result


HANDLERS = {"sweep": cmd_sweep, "report": cmd_report}
