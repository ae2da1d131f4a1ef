"""The analysis subcommands: states, compare, gap, modes, surface, bias, plot.
Heavy imports happen inside the handlers so that ``mbiapo --help`` stays fast."""

import argparse
import functools
from pathlib import Path

from mbiapo.errors import MbiapoError
from mbiapo.planners import PLANNERS
from mbiapo.value import VALUES


def _common(p: argparse.ArgumentParser, out: str, states: bool = True) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    if states:
        p.add_argument("--states", required=True, help="states file from 'mbiapo states'")
    p.add_argument("--value", choices=VALUES.names(), help="value estimate to analyse (default: "
                   "the checkpoint's; model-based on a model-free checkpoint fits a model on "
                   "its replay data, as 'mbiapo plan --model-based')")
    p.add_argument("--beta", type=float, help="pessimism of Q-hat (default value.beta_collect)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path(out), help=f"results folder (default {out})")
    p.add_argument("--force", action="store_true", help="overwrite results in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _objective_flags(p: argparse.ArgumentParser, samples: int | None,
                     eval_samples: int) -> None:
    p.add_argument("--samples", type=int, default=samples, help="action samples per J "
                   "estimate while planning" + ("" if samples else " (default planner.samples)"))
    p.add_argument("--eval-samples", type=int, default=eval_samples,
                   help="action samples of the common estimator that scores every result")


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of the untrained planners, e.g. planner.lr=0.05 "
                   "planner.elites=6 (each goes to the listed planners that have it)")


def add_parsers(sub) -> None:
    p = sub.add_parser("states", help="collect on-policy states for the analyses",
                       description="Run the checkpoint's planner in the real environment and "
                       "save N of the visited states (drawn uniformly) to an HDF5 file.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--n", type=int, default=100, help="number of states")
    p.add_argument("--out", type=Path, required=True, help="STATES.h5 to write")
    p.add_argument("--episodes", type=int, default=5, help="episodes run side by side")
    p.add_argument("--deterministic", action="store_true", help="act with tanh(mu) instead "
                   "of sampling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    p = sub.add_parser("compare", help="compare planners on saved states (paper Fig. 18)",
                       description="Run every planner from the same initialisation on all "
                       "saved states at once; J after each iteration, seconds per iteration, "
                       "and the iterations each needs to reach the checkpoint's planner's J "
                       "after min(5, its iterations). Writes compare.csv, summary.json, "
                       "compare.png.")
    _common(p, "compare")
    p.add_argument("--planners", help="comma-separated, e.g. iterative,adam,cem,direct=RUN "
                   "(NAME=CKPT takes a trained planner from another checkpoint of the same "
                   "env; default: the checkpoint's planner and every untrained one)")
    p.add_argument("--iters", type=int, default=100, help="iterations per planner")
    _objective_flags(p, None, 100)
    _overrides(p)

    p = sub.add_parser("gap", help="amortization gap (paper Fig. 6)",
                       description="From each planner's estimate, Adam on lambda; the gap is "
                       "the improvement J(refined) - J(estimate). A trained planner with "
                       "iterations is also run for --extra-iters more. Writes gap.csv, "
                       "summary.json, gap.png.")
    _common(p, "gap")
    p.add_argument("--planners", help="as for compare (default: the checkpoint's planner)")
    p.add_argument("--steps", type=int, default=100, help="Adam steps")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate")
    p.add_argument("--extra-iters", type=int, default=5,
                   help="extra iterations for a trained planner with iterations (0: skip)")
    _objective_flags(p, 100, 1000)
    _overrides(p)

    p = sub.add_parser("modes", help="multiple policy modes (paper Fig. 7)",
                       description="Repeated planning runs per state from random "
                       "initialisations: histogram of distances between tanh(mu) across runs; "
                       "J and the runs' density on each pair of action dims for the state "
                       "with the largest distance. Writes modes*.csv, summary.json, plots.")
    _common(p, "modes")
    p.add_argument("--runs", type=int, default=10, help="planning runs per state")
    p.add_argument("--planner", choices=PLANNERS.names(), help="default: the checkpoint's")
    p.add_argument("--iters", type=int, help="iterations per run (default: the planner's)")
    p.add_argument("--init-std", type=float, default=1.0, help="initial mu ~ N(0, s^2)")
    p.add_argument("--grid", type=int, default=25, help="grid points per action dim")
    _objective_flags(p, None, 100)
    _overrides(p)

    p = sub.add_parser("surface", help="J over two dims of the policy mean (paper Figs. 1, 19)",
                       description="J over two action dims (a = tanh(mu)), the rest fixed at "
                       "the checkpoint planner's estimate, with each planner's path. Writes "
                       "surface.csv, surface_paths.csv, summary.json, surface.png.")
    _common(p, "surface", states=False)
    p.add_argument("--states", help="states file (default: state I is the environment's "
                   "first observation after reset(seed=I))")
    p.add_argument("--state", type=int, default=0, help="index I of the state")
    p.add_argument("--dims", default="0,1", help="two action dims i,j")
    p.add_argument("--planners", help="paths to draw, as for compare")
    p.add_argument("--iters", type=int, default=100, help="iterations of untrained planners")
    p.add_argument("--grid", type=int, default=41, help="grid points per dim")
    _objective_flags(p, None, 1000)
    _overrides(p)

    p = sub.add_parser("bias", help="value bias against Monte Carlo returns (paper Fig. 3a)",
                       description="Q-hat minus soft Monte Carlo returns in the real "
                       "environment, on state-action pairs of a uniform random policy. Writes "
                       "bias.csv, summary.json, bias.png.")
    _common(p, "bias", states=False)
    p.add_argument("--pairs", type=int, default=100, help="state-action pairs")
    p.add_argument("--rollouts", type=int, default=10, help="Monte Carlo rollouts per pair")
    p.add_argument("--horizon", type=int, default=500, help="steps per rollout")

    p = sub.add_parser("plot", help="redraw an analysis folder's figures from its files")
    p.add_argument("dir", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _agent(args):
    from mbiapo.analyses.common import analysis_agent

    return analysis_agent(str(args.checkpoint), args.value, args.device, args.seed)


def _states(args, agent):
    from mbiapo.analyses.calls import saved_states

    return saved_states(args.states, agent)


def _setup(args, agent, obs):
    from mbiapo.analyses.calls import setup

    return setup(agent, obs, args.out, args.force, args.checkpoint, args.value, args.beta,
                 args.seed)


def _files(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Each file in ``folder`` with what changes when it is written (inode, mtime, size)."""
    files = {}
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.is_file():
            st = path.stat()
            files[path.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return files


def _cut_short_leaves_no_results(handler):
    """An analysis that fails or is interrupted (Ctrl-C) leaves no results that look
    complete: the files it wrote in --out are removed, and --out too if it made it."""

    @functools.wraps(handler)
    def run(args) -> dict:
        existed, before = args.out.is_dir(), _files(args.out)
        try:
            return handler(args)
        except (Exception, KeyboardInterrupt):
            for name, signature in _files(args.out).items():
                if before.get(name) != signature:
                    (args.out / name).unlink(missing_ok=True)
            if not existed and args.out.is_dir() and not any(args.out.iterdir()):
                args.out.rmdir()
            raise

    return run


def cmd_states(args) -> dict:
    from mbiapo.analyses.calls import states

    return states(args.checkpoint, args.n, args.out, args.seed, args.episodes,
                  args.deterministic, args.device, args.force)


@_cut_short_leaves_no_results
def cmd_compare(args) -> dict:
    from mbiapo.analyses.calls import compare

    return compare(args.checkpoint, args.states, args.out, args.planners, args.iters,
                   args.samples, args.eval_samples, args.value, args.beta, args.seed,
                   args.overrides, args.device, args.force)


@_cut_short_leaves_no_results
def cmd_gap(args) -> dict:
    from mbiapo.analyses.calls import gap

    return gap(args.checkpoint, args.states, args.out, args.planners, args.steps, args.lr,
               args.extra_iters, args.samples, args.eval_samples, args.value, args.beta,
               args.seed, args.overrides, args.device, args.force)


@_cut_short_leaves_no_results
def cmd_modes(args) -> dict:
    from mbiapo.analyses import modes
    from mbiapo.analyses.calls import positive

    positive(iters=args.iters, samples=args.samples, eval_samples=args.eval_samples)
    if args.runs < 2 or args.grid < 2:
        raise MbiapoError("--runs and --grid must be >= 2")
    agent = _agent(args)
    obs = _states(args, agent)
    planner = agent.planner_named(args.planner, args.overrides)
    return modes.run(_setup(args, agent, obs), args.planner or agent.cfg.planner.name,
                     planner, args.runs, args.iters, args.init_std, args.grid, args.samples,
                     args.eval_samples)


def _one_state(args, agent):
    """obs (S,) of --state I: from --states, or the env's reset(seed=I) observation."""
    import torch

    from mbiapo.envs import make_env

    if args.state < 0:
        raise MbiapoError(f"--state must be >= 0, got {args.state}")
    if args.states:
        states = _states(args, agent)
        if not 0 <= args.state < len(states):
            raise MbiapoError(f"--state {args.state} is out of range: {args.states} holds "
                              f"{len(states)} states")
        return states[args.state]
    env = make_env(agent.cfg.env.id)
    obs, _ = env.reset(seed=args.state)
    env.close()
    return torch.as_tensor(obs, dtype=torch.float32, device=agent.device)


def _dims(text: str, act_dim: int, env_id: str) -> tuple[int, int]:
    """--dims i,j: two different action dims."""
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < act_dim for d in dims):
        raise MbiapoError(f"--dims needs two different action dims in [0, {act_dim}), e.g. "
                          f"0,1; got '{text}'" + (f" ({env_id} has a single action dim)"
                                                  if act_dim < 2 else ""))
    return dims


@_cut_short_leaves_no_results
def cmd_surface(args) -> dict:
    from mbiapo.analyses import surface
    from mbiapo.analyses.calls import default_planners, positive
    from mbiapo.analyses.common import planners_from_spec

    positive(iters=args.iters, samples=args.samples, eval_samples=args.eval_samples)
    agent = _agent(args)
    dims = _dims(args.dims, agent.act_dim, agent.cfg.env.id)
    if args.grid < 2:
        raise MbiapoError("--grid must be >= 2")
    obs = _one_state(args, agent).unsqueeze(0)
    planners = planners_from_spec(agent, args.planners, args.overrides,
                                  default_planners(agent), runs_for=args.iters)
    return surface.run(_setup(args, agent, obs), planners, dims, args.grid, args.iters,
                       args.samples, args.eval_samples,
                       {"state": args.state, "states_file": args.states})


@_cut_short_leaves_no_results
def cmd_bias(args) -> dict:
    from mbiapo.analyses import bias
    from mbiapo.analyses.calls import positive

    positive(pairs=args.pairs, rollouts=args.rollouts, horizon=args.horizon)
    agent = _agent(args)
    return bias.run(_setup(args, agent, None), args.pairs, args.rollouts, args.horizon)


def cmd_plot(args) -> dict:
    from mbiapo.analyses.plots import replot

    return {"figures": [str(p) for p in replot(args.dir)]}


HANDLERS = {"states": cmd_states, "compare": cmd_compare, "gap": cmd_gap, "modes": cmd_modes,
            "surface": cmd_surface, "bias": cmd_bias, "plot": cmd_plot}
