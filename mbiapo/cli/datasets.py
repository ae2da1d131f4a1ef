"""The dataset subcommands: ``collect`` and ``dataset info``. Heavy imports happen inside
the handlers so that ``mbiapo --help`` stays fast."""

import math
from pathlib import Path

from mbiapo.errors import MbiapoError
from mbiapo.paths import check_new_file
from mbiapo.planners import PLANNERS


def add_parsers(sub) -> None:
    p = sub.add_parser("collect", help="write a D4RL-layout dataset by running a checkpoint",
                       description="Run the checkpoint's planner (tanh(mu) plus Gaussian noise) "
                       "or a uniform random policy and write the D4RL layout, with the env id, "
                       "spaces and the policy under metadata/. Actions are in the env's units.")
    p.add_argument("--checkpoint", help="checkpoint.pt or a run folder (not needed with "
                   "--random --env ENV)")
    p.add_argument("--env", help="environment for --random without a checkpoint")
    p.add_argument("--episodes", type=int, required=True, help="episodes to record")
    p.add_argument("--out", type=Path, required=True, help="FILE.h5 to write")
    p.add_argument("--planner", choices=PLANNERS.names(), help="default: the checkpoint's")
    p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian action noise "
                   "in [-1, 1] units")
    p.add_argument("--random", action="store_true", help="uniform random actions")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED+i")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of an untrained --planner, e.g. planner.population=50")

    p = sub.add_parser("dataset", help="inspect datasets (D4RL, Minari, mbiapo files)")
    dsub = p.add_subparsers(dest="dataset_command", required=True, parser_class=type(p))
    q = dsub.add_parser("info", help="layout, sizes, returns, ends, env id and validation")
    q.add_argument("path", type=Path, help="HDF5 file or Minari dataset folder")
    q.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cmd_collect(args) -> dict:
    from mbiapo.checkpoint import load_agent
    from mbiapo.collect import collect_dataset

    if args.episodes < 1:
        raise MbiapoError(f"--episodes must be >= 1, got {args.episodes}")
    if not 0 <= args.noise < math.inf:  # NaN too
        raise MbiapoError(f"--noise must be a finite number >= 0, got {args.noise}")
    check_new_file(args.out, args.force)
    agent = planner = None
    if args.checkpoint:
        agent, _ = load_agent(args.checkpoint)
        if args.env and args.env != agent.cfg.env.id:
            raise MbiapoError(f"--env {args.env} differs from the checkpoint's "
                              f"{agent.cfg.env.id}")
        env_id, max_steps = agent.cfg.env.id, agent.cfg.env.max_episode_steps
        planner = agent.planner_named(args.planner, args.overrides)
    elif args.random and args.env:
        env_id, max_steps = args.env, None
    else:
        raise MbiapoError("collect needs --checkpoint CKPT (or --random --env ENV)")
    if args.random:
        policy, agent = "uniform random actions", None
    else:
        policy = (f"mbiapo checkpoint {args.checkpoint}, planner "
                  f"{args.planner or agent.cfg.planner.name}, tanh(mu) + N(0, {args.noise}^2)")
    return collect_dataset(args.out, agent, env_id, args.episodes, args.seed, planner,
                           args.noise, max_steps, policy)


def cmd_dataset(args) -> dict:
    from mbiapo.collect import describe
    from mbiapo.datasets import read_dataset

    return describe(read_dataset(args.path))


HANDLERS = {"collect": cmd_collect, "dataset": cmd_dataset}
