"""``mbiapo`` command line. Results go to stdout (one JSON object with --json); progress and
logs go to stderr. Bad input is one ``mbiapo: error: ...`` line and exit code 2."""

import argparse
import json
import signal
import sys
from pathlib import Path

from mbiapo import dataset_commands, sweep_commands
from mbiapo.analyses import commands as analyses
from mbiapo.config import compose
from mbiapo.errors import MbiapoError
from mbiapo.paths import check_writable_folder
from mbiapo.planners import PLANNERS
from mbiapo.registry import load_plugins
from mbiapo.runtime import keep_freed_memory
from mbiapo.value import VALUES


class _Parser(argparse.ArgumentParser):
    """Every (sub)command takes --plugin (loaded before parsing: ``_plugin_specs``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                          help="import MODULE (or FILE.py) first: it may register planners "
                          "and value estimators (repeatable)")

    def error(self, message: str):  # one line instead of usage + message
        raise MbiapoError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _plugin_specs(argv: list[str]) -> list[str]:
    """The --plugin values of a command line."""
    specs = []
    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            specs.append(argv[i + 1])
        elif arg.startswith("--plugin="):
            specs.append(arg.partition("=")[2])
    return specs


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--planner", choices=PLANNERS.names(), help="plan with this planner "
                   "(default: the one the checkpoint trained)")
    p.add_argument("--iters", type=int, help="planner iterations per action")
    p.add_argument("--episodes", type=int, default=10, help="episodes to run")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED+i")
    p.add_argument("--env", help="environment to run in, for a run trained offline on a "
                   "dataset that names none (else the checkpoint's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--video", type=Path, metavar="DIR", help="record each episode to "
                   "DIR/episode-<seed>.mp4 (.gif without an MP4 encoder; headless: EGL)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of an untrained --planner, e.g. planner.population=50")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mbiapo", description="Policy optimization as planning: train "
                     "agents, plan with their value estimates, benchmark planners.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train an agent online on a gymnasium task",
                       description="Train online. Writes OUT/config.yaml, OUT/metrics.csv, "
                       "OUT/checkpoint.pt (+ OUT/replay.h5). Ctrl-C saves a checkpoint.")
    p.add_argument("--env", help="gymnasium id, e.g. HalfCheetah-v5")
    p.add_argument("--planner", choices=PLANNERS.names())
    p.add_argument("--value", choices=VALUES.names(), help="value estimate (value.kind)")
    p.add_argument("--steps", type=int, help="environment steps (train.steps)")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--out", type=Path, help="run folder")
    p.add_argument("--config", help="YAML file merged over the packaged configs")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    p.add_argument("--offline", type=Path, metavar="DATASET", help="train from a fixed "
                   "dataset (D4RL/Minari/mbiapo HDF5); --steps counts updates, the env is "
                   "used only to evaluate (--env, else the dataset's, else no evaluation)")
    p.add_argument("--tensorboard", action="store_true", help="also log the metrics to "
                   "OUT/tb for TensorBoard (train.tensorboard=true)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.lr=1e-3 value.beta_train=2")

    p = sub.add_parser("evaluate", help="mean return of a checkpoint's planner")
    _add_run_flags(p)
    p = sub.add_parser("plan", help="act by planning with a checkpoint's value estimate; "
                       "returns and latency per action",
                       description="Act in the real environment by planning; prints returns "
                       "and planning latency per action. With --model-based, the checkpoint's "
                       "planner plans against a model-based value estimate instead (transfer), "
                       "and the checkpoint's own model-free returns are printed beside it.")
    _add_run_flags(p)
    p.add_argument("--model-based", action="store_true",
                   help="plan against a model-based value estimate")
    p.add_argument("--value", metavar="MB_CKPT", help="take the model, Q nets and rollout "
                   "policy from this model-based checkpoint")
    p.add_argument("--data", metavar="FILE.h5", help="fit the model on this replay/dataset "
                   "file (default: the replay.h5 beside --checkpoint)")
    p.add_argument("--fit-steps", type=int, default=3000,
                   help="model and rollout-policy updates when fitting (cached)")
    p.add_argument("--compile", action="store_true", help="torch.compile J and its gradient "
                   "(value estimate included): 2-3x faster planning per action after 10-25 s "
                   "of compilation at the first action (needs a C++ compiler)")
    p = sub.add_parser("bench", help="update rates and acting latency (HalfCheetah-v5 shapes)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--seconds", type=float, default=5.0, help="time budget per measurement")
    p.add_argument("--no-sb3", action="store_true", help="skip the stable-baselines3 baseline")
    p.add_argument("--no-model-based", action="store_true", help="skip model-based agents")
    p.add_argument("--no-compare", action="store_true", help="skip timing 'mbiapo compare'")
    p.add_argument("--no-dataset", action="store_true", help="skip timing dataset loading")
    p.add_argument("--device", default="cpu", help="where the agents run (cpu, cuda)")
    dataset_commands.add_parsers(sub)
    analyses.add_parsers(sub)
    sweep_commands.add_parsers(sub)
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _run_config(args, env: str | None):
    explicit = [f"train.steps={args.steps}"] if args.steps is not None else []
    explicit += [f"train.seed={args.seed}"] if args.seed is not None else []
    explicit += [f"value.kind={args.value}"] if args.value else []
    explicit += ["train.tensorboard=true"] if args.tensorboard else []
    return compose(env, args.planner, args.config, [*args.overrides, *explicit])


def cmd_train(args) -> dict:
    from mbiapo.train import resume_run, start_offline, start_run

    if args.resume:
        if args.env or args.planner or args.value or args.config or args.out \
                or args.seed is not None or args.overrides or args.offline or args.tensorboard:
            raise MbiapoError("--resume continues a run as configured; only --steps may change")
        trainer = resume_run(args.resume, args.steps)
    elif args.offline:
        from mbiapo.offline import prepare
        from mbiapo.run_folder import check_new_run

        if args.out is None:
            raise MbiapoError("mbiapo train --offline needs --out DIR")
        check_new_run(args.out)  # before the dataset is read
        env, data = prepare(args.offline, args.env)
        trainer = start_offline(_run_config(args, env), args.out, data)
    else:
        if args.out is None:
            raise MbiapoError("mbiapo train needs --out DIR (or --resume DIR)")
        trainer = start_run(_run_config(args, args.env), args.out)
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop saves like Ctrl-C
    try:
        last = trainer.run()
    except KeyboardInterrupt:
        print(f"interrupted at step {trainer.step}; checkpoint saved; continue with "
              f"'mbiapo train --resume {trainer.out}'", file=sys.stderr)
        raise SystemExit(130) from None
    return {"out": str(trainer.out), **{k: v for k, v in last.items() if v != ""}}


def _load_for_run(args):
    from mbiapo.checkpoint import check_env_matches, load_agent
    from mbiapo.envs import NO_ENV, env_dims, make_env

    agent, payload = load_agent(args.checkpoint, args.device)
    if args.env and agent.cfg.env.id not in (NO_ENV, args.env):
        raise MbiapoError(f"--env {args.env} differs from the checkpoint's {agent.cfg.env.id}")
    agent.cfg.env.id = args.env or agent.cfg.env.id
    env = make_env(agent.cfg.env.id, agent.cfg.env.max_episode_steps)
    check_env_matches(payload, *env_dims(env), agent.cfg.env.id)
    env.close()
    if args.episodes < 1:
        raise MbiapoError(f"--episodes must be >= 1, got {args.episodes}")
    if args.iters is not None and args.iters < 1:
        raise MbiapoError(f"--iters must be >= 1, got {args.iters}")
    if args.video:
        check_writable_folder(args.video, "--video")
    return agent, agent.planner_named(args.planner, args.overrides)


def cmd_evaluate(args) -> dict:
    from mbiapo.evaluate import play_and_summarize

    agent, planner = _load_for_run(args)
    return play_and_summarize(agent, args.planner, planner, _episodes(args), latency=False)


def _episodes(args):
    from mbiapo.evaluate import Episodes

    return Episodes(args.episodes, args.seed, args.iters, args.video)


def cmd_plan(args) -> dict:
    from mbiapo import transfer
    from mbiapo.evaluate import play_and_summarize

    if not args.model_based:
        if args.value or args.data:
            raise MbiapoError("--value and --data choose a model-based value estimate; "
                              "add --model-based")
        agent, planner = _load_for_run(args)
        return play_and_summarize(agent, args.planner, planner, _episodes(args), latency=True,
                                  compile=args.compile)
    if args.value and args.data:
        raise MbiapoError("pass either --value MB_CKPT or --data FILE.h5, not both")
    if args.fit_steps < 1:
        raise MbiapoError(f"--fit-steps must be >= 1, got {args.fit_steps}")
    mf, planner = _load_for_run(args)
    return transfer.plan_model_based(mf, planner, args.checkpoint, _episodes(args),
                                     value=args.value, data=args.data,
                                     fit_steps=args.fit_steps, name=args.planner,
                                     overrides=args.overrides, compile=args.compile,
                                     device=args.device)


def cmd_bench(args) -> dict:
    from mbiapo.bench import run_bench

    return run_bench(seconds=args.seconds, with_sb3=not args.no_sb3,
                     with_model_based=not args.no_model_based,
                     compare_size=None if args.no_compare else (100, 100),
                     dataset_rows=None if args.no_dataset else 1_000_000, device=args.device)


def _print_human(result: dict) -> None:
    if "table" in result:  # an analysis: its table and where its files are
        print(result["table"])
        print(f"results in {result['out']}")
        return
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        print(f"{key:>22}: {value}")


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    argv = sys.argv[1:] if argv is None else argv
    try:
        load_plugins(_plugin_specs(argv))  # before the parser: they add --planner choices
        args = build_parser().parse_args(argv)
        handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "plan": cmd_plan,
                    "bench": cmd_bench, **dataset_commands.HANDLERS, **analyses.HANDLERS,
                    **sweep_commands.HANDLERS}
        result = handlers[args.command](args)
    except MbiapoError as e:
        print(f"mbiapo: error: {e}", file=sys.stderr)
        return 2
    exit_code = result.pop("exit_code", 0)  # a sweep with failed runs still reports them
    if getattr(args, "json", False):
        result.pop("table", None)
        print(json.dumps(result))
    else:
        _print_human(result)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
