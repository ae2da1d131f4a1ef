"""The analysis subcommands: states, compare, gap, modes, surface, bias, plot.
Heavy imports happen inside the handlers so that ``mbiapo --help`` stays fast."""

import argparse
from pathlib import Path

from mbiapo.errors import MbiapoError
from mbiapo.paths import check_new_file
from mbiapo.planners import PLANNERS, untrained_planners
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
                       "and the iterations adam and cem need to reach the iterative planner's "
                       "J after 5. Writes compare.csv, summary.json, compare.png.")
    _common(p, "compare")
    p.add_argument("--planners", help="comma-separated, e.g. iterative,adam,cem,direct=RUN "
                   "(NAME=CKPT takes a trained planner from another checkpoint of the same "
                   "env; default: the checkpoint's planner and every untrained one)")
    p.add_argument("--iters", type=int, default=100, help="iterations per planner")
    _objective_flags(p, None, 100)
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of the untrained planners, e.g. planner.lr=0.05 "
                   "planner.elites=6 (each goes to the listed planners that have it)")

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
                   help="extra iterations for a trained iterative planner (0: skip)")
    _objective_flags(p, 100, 1000)
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of the untrained planners, e.g. planner.lr=0.05 "
                   "planner.elites=6 (each goes to the listed planners that have it)")

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
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of the untrained planners, e.g. planner.lr=0.05 "
                   "planner.elites=6 (each goes to the listed planners that have it)")

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
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of the untrained planners, e.g. planner.lr=0.05 "
                   "planner.elites=6 (each goes to the listed planners that have it)")

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
    p.add_argument("--json", action="store_true")


def _positive(**values) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise MbiapoError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _agent(args):
    from mbiapo.analyses.common import analysis_agent

    return analysis_agent(args.checkpoint, args.value, args.device, args.seed)


def _states(args, agent):
    import torch

    from mbiapo.analyses.states import load_states

    return torch.as_tensor(load_states(args.states, agent), device=agent.device)


def _planners(agent, spec: str | None, overrides: list[str], default: list[str]) -> dict:
    """Planners by name from ``spec`` ("a,b,c=CKPT") or ``default``: the checkpoint's own,
    a trained one from another checkpoint of the same environment, or an untrained one from
    its config with the ``planner.key=value`` overrides it has (each must fit one)."""
    from mbiapo.checkpoint import load_agent
    from mbiapo.config import overrides_for

    wrong = [item for item in overrides if not item.startswith("planner.")]
    if wrong:
        raise MbiapoError(f"only planner.* settings can be overridden here, got {wrong[0]}")
    planners, used = {}, set()
    for item in spec.split(",") if spec else default:
        name, _, source = item.strip().partition("=")
        PLANNERS.get(name)  # says so if unknown
        if name in planners:
            raise MbiapoError(f"planner '{name}' is listed twice")
        if source:
            other, _ = load_agent(source, str(agent.device))
            if other.cfg.planner.name != name:
                raise MbiapoError(f"{source} trained a '{other.cfg.planner.name}' planner, "
                                  f"not '{name}'")
            if (other.cfg.env.id, other.obs_dim, other.act_dim) != \
                    (agent.cfg.env.id, agent.obs_dim, agent.act_dim):
                raise MbiapoError(f"{source} was trained on {other.cfg.env.id}, the "
                                  f"checkpoint on {agent.cfg.env.id}")
            planners[name] = other.planner
        elif PLANNERS.get(name).build.trainable:
            planners[name] = agent.planner_named(name)  # says so if it has none
        else:
            mine = overrides_for(name, overrides)
            used.update(mine)
            planners[name] = agent.planner_named(name, mine)
    unused = [item for item in overrides if item not in used]
    if unused:
        listed = [n for n in planners if not PLANNERS.get(n).build.trainable]
        raise MbiapoError(f"'{unused[0]}' sets no listed untrained planner "
                          f"({', '.join(listed) or 'none listed'})")
    return planners


def _settings(args, agent, n_states: int) -> dict:
    from omegaconf import OmegaConf

    return {"env": agent.cfg.env.id, "checkpoint": str(args.checkpoint),
            "value": agent.cfg.value.kind if args.value is None else args.value,
            "beta": agent.cfg.value.beta_collect if args.beta is None else args.beta,
            "states": n_states, "seed": args.seed,
            "planner_config": OmegaConf.to_container(agent.cfg.planner)}


def cmd_states(args) -> dict:
    from mbiapo.analyses.states import collect_states, save_states
    from mbiapo.checkpoint import load_agent

    _positive(n=args.n, episodes=args.episodes)
    check_new_file(args.out, args.force)
    agent, _ = load_agent(args.checkpoint, args.device)
    states = collect_states(agent, args.n, args.seed, args.episodes, args.deterministic)
    save_states(args.out, states, agent, {"checkpoint": str(args.checkpoint), "seed": args.seed,
                                          "planner": agent.cfg.planner.name,
                                          "deterministic": args.deterministic})
    return {"out": str(args.out), "env": agent.cfg.env.id, "states": len(states),
            "obs_dim": agent.obs_dim}


def cmd_compare(args) -> dict:
    from mbiapo.analyses import compare, plots
    from mbiapo.analyses.common import agent_objective, output_dir, write_csv, write_json

    _positive(iters=args.iters, samples=args.samples, eval_samples=args.eval_samples)
    agent = _agent(args)
    obs = _states(args, agent)
    planners = _planners(agent, args.planners, args.overrides,
                         [agent.cfg.planner.name, *untrained_planners()])
    out = output_dir(args.out, args.force)
    traces = compare.compare(planners, agent_objective(agent, args.beta, args.samples),
                             agent_objective(agent, args.beta, args.eval_samples), obs,
                             args.iters, args.seed)
    summary = {"analysis": "compare", **_settings(args, agent, len(obs)), "iters": args.iters,
               "samples": args.samples or agent.cfg.planner.samples,
               "eval_samples": args.eval_samples, "overrides": args.overrides,
               **compare.summarize(traces, agent.cfg.planner.name)}
    write_csv(out / "compare.csv", compare.csv_rows(traces))
    write_json(out / "summary.json", summary)
    plots.plot_compare(out)
    return {**summary, "out": str(out), "table": compare.table(summary)}


def cmd_gap(args) -> dict:
    from tqdm import tqdm

    from mbiapo.analyses import plots
    from mbiapo.analyses.common import (
        agent_objective,
        follow,
        mean_std,
        output_dir,
        write_csv,
        write_json,
    )
    from mbiapo.analyses.gap import amortization_gap

    _positive(steps=args.steps, samples=args.samples, eval_samples=args.eval_samples)
    if args.extra_iters < 0:
        raise MbiapoError(f"--extra-iters must be >= 0, got {args.extra_iters}")
    agent = _agent(args)
    obs = _states(args, agent)
    planners = _planners(agent, args.planners, args.overrides, [agent.cfg.planner.name])
    out = output_dir(args.out, args.force)
    plan_objective = agent_objective(agent, args.beta, None)(obs)
    estimates = {}
    for name, planner in planners.items():
        estimates[name] = follow(planner, plan_objective, obs, planner.iters)[0][-1]
        if planner.trainable and planner.iters > 1 and args.extra_iters:
            extra = follow(planner, plan_objective, obs, planner.iters + args.extra_iters)
            estimates[f"{name}+{args.extra_iters}"] = extra[0][-1]
    refine = agent_objective(agent, args.beta, args.samples)(obs)
    score = agent_objective(agent, args.beta, args.eval_samples)(obs)
    rows, results = [], {}
    for label, estimate in tqdm(estimates.items(), desc="gap", unit="planner", leave=False):
        before, after = amortization_gap(refine, score, obs, estimate, args.steps, args.lr,
                                         args.seed)
        rows += [{"state": b, "planner": label, "J_estimate": f"{x:.6g}",
                  "J_refined": f"{y:.6g}", "gap": f"{y - x:.6g}"}
                 for b, (x, y) in enumerate(zip(before.tolist(), after.tolist()))]
        results[label] = {"J_estimate": mean_std(before), "J_refined": mean_std(after),
                          "gap": mean_std(after - before)}
    summary = {"analysis": "gap", **_settings(args, agent, len(obs)), "adam_steps": args.steps,
               "adam_lr": args.lr, "samples": args.samples, "eval_samples": args.eval_samples,
               "planners": results}
    write_csv(out / "gap.csv", rows)
    write_json(out / "summary.json", summary)
    plots.plot_gap(out)
    lines = [f"{'planner':<14} {'J(estimate)':>20} {'J(refined)':>20} {'gap':>20}"]
    for label, r in results.items():
        cells = [f"{r[k]['mean']:.4g} ± {r[k]['std']:.3g}" for k in ("J_estimate", "J_refined",
                                                                    "gap")]
        lines.append(f"{label:<14} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}")
    return {**summary, "out": str(out), "table": "\n".join(lines)}


def _pair_rows(objective_fn, obs, mu, log_std, pairs, grid, seed, density=None) -> list[dict]:
    """Grid cells of J (and optionally a density) for every pair of action dims at one state."""
    from tqdm import tqdm

    from mbiapo.analyses.surface import action_axis, grid_objective

    axis = action_axis(grid, obs.device)
    rows = []
    for dims in tqdm(pairs, desc="surfaces", unit="pair", leave=False, disable=len(pairs) < 2):
        j = grid_objective(objective_fn, obs, mu, log_std, dims, axis, seed)
        dens = density(dims, axis) if density else None
        for x in range(grid):
            for y in range(grid):
                row = {"pair": f"{dims[0]}-{dims[1]}", "a_x": f"{axis[x].item():.6g}",
                       "a_y": f"{axis[y].item():.6g}", "objective": f"{j[x, y].item():.6g}"}
                if dens is not None:
                    row["density"] = f"{dens[x, y].item():.6g}"
                rows.append(row)
    return rows


def cmd_modes(args) -> dict:
    import itertools
    import math

    import torch

    from mbiapo.analyses import plots
    from mbiapo.analyses.common import (
        agent_objective,
        evaluate,
        mean_std,
        output_dir,
        write_csv,
        write_json,
    )
    from mbiapo.analyses.modes import mixture_density, pairwise_distances, planning_runs

    _positive(iters=args.iters, samples=args.samples, eval_samples=args.eval_samples)
    if args.runs < 2 or args.grid < 2:
        raise MbiapoError("--runs and --grid must be >= 2")
    agent = _agent(args)
    obs = _states(args, agent)
    planner = agent.planner_named(args.planner, args.overrides)
    out = output_dir(args.out, args.force)
    mu, log_std = planning_runs(planner, agent_objective(agent, args.beta, args.samples), obs,
                                args.runs, args.iters, agent.act_dim, args.init_std, args.seed)
    actions = torch.tanh(mu)
    distances = pairwise_distances(actions)  # (N, P)
    repeated = obs.repeat_interleave(args.runs, 0)  # J of every run: distinct modes score alike
    values = evaluate(agent_objective(agent, args.beta, args.eval_samples)(repeated),
                      [(mu.flatten(0, 1), log_std.flatten(0, 1))], args.seed)[0]
    values = values.reshape(len(obs), args.runs)
    i, j = torch.triu_indices(args.runs, args.runs, 1)
    write_csv(out / "modes.csv", [
        {"state": b, "run_i": i[p].item(), "run_j": j[p].item(), "distance": f"{d:.6g}",
         "J_i": f"{values[b, i[p]].item():.6g}", "J_j": f"{values[b, j[p]].item():.6g}"}
        for b, row in enumerate(distances.tolist()) for p, d in enumerate(row)])
    widest = distances.max(1).values.argmax().item()
    top = distances[widest].argmax().item()
    pairs = list(itertools.combinations(range(agent.act_dim), 2))
    if pairs:  # the widest state's runs, J around its first run, the runs' mixture density
        write_csv(out / "modes_runs.csv", [
            {"pair": f"{x}-{y}", "run": r, "a_x": f"{a[x]:.6g}", "a_y": f"{a[y]:.6g}"}
            for x, y in pairs for r, a in enumerate(actions[widest].tolist())])
        first = i[top].item()
        eval_fn = agent_objective(agent, args.beta, args.eval_samples)
        write_csv(out / "modes_pairs.csv", _pair_rows(
            eval_fn, obs[widest], mu[widest, first], log_std[widest, first], pairs, args.grid,
            args.seed, lambda dims, axis: mixture_density(mu[widest], log_std[widest], dims,
                                                          axis)))
    max_possible = 2 * math.sqrt(agent.act_dim)
    summary = {"analysis": "modes", **_settings(args, agent, len(obs)),
               "planner": args.planner or agent.cfg.planner.name, "runs": args.runs,
               "iters": args.iters or planner.iters, "init_std": args.init_std,
               "max_possible_distance": max_possible, "distance": mean_std(distances.flatten()),
               "distance_max": distances.max().item(),
               "pairs_over_10pct_of_max": (distances > 0.1 * max_possible).float().mean().item(),
               "widest_state": widest, "widest_runs": [i[top].item(), j[top].item()],
               "J_spread_of_runs": mean_std(values.max(1).values - values.min(1).values)}
    write_json(out / "summary.json", summary)
    plots.plot_modes(out)
    spread = summary["J_spread_of_runs"]
    table = (f"{args.runs} runs x {len(obs)} states, distances between tanh(mu) "
             f"(max possible {max_possible:.3g}): mean {summary['distance']['mean']:.3g} ± "
             f"{summary['distance']['std']:.3g}, max {summary['distance_max']:.3g} (state "
             f"{widest}); {100 * summary['pairs_over_10pct_of_max']:.1f}% of pairs further "
             f"apart than 10% of the max; best minus worst J of a state's runs "
             f"{spread['mean']:.3g} ± {spread['std']:.3g}")
    return {**summary, "out": str(out), "table": table}


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


def cmd_surface(args) -> dict:
    import torch

    from mbiapo.analyses import plots
    from mbiapo.analyses.common import (
        agent_objective,
        evaluate,
        follow,
        output_dir,
        write_csv,
        write_json,
    )

    _positive(iters=args.iters, samples=args.samples, eval_samples=args.eval_samples)
    agent = _agent(args)
    try:
        dims = tuple(int(d) for d in args.dims.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= d < agent.act_dim for d in dims):
        raise MbiapoError(f"--dims needs two different action dims in [0, {agent.act_dim}), "
                          f"e.g. 0,1; got '{args.dims}'" + (
                              f" ({agent.cfg.env.id} has a single action dim)"
                              if agent.act_dim < 2 else ""))
    if args.grid < 2:
        raise MbiapoError("--grid must be >= 2")
    obs = _one_state(args, agent).unsqueeze(0)
    planners = _planners(agent, args.planners, args.overrides,
                         [agent.cfg.planner.name, *untrained_planners()])
    out = output_dir(args.out, args.force)
    plan_objective = agent_objective(agent, args.beta, args.samples)(obs)
    score = agent_objective(agent, args.beta, args.eval_samples)
    estimate = follow(agent.planner, plan_objective, obs, agent.planner.iters)[0][-1]
    grid_rows = _pair_rows(score, obs[0], estimate[0][0], estimate[1][0], [dims], args.grid,
                           args.seed)
    pair, path_rows, finals = f"{dims[0]}-{dims[1]}", [], {}
    for name, planner in planners.items():
        params = follow(planner, plan_objective, obs,
                        planner.iters if planner.trainable else args.iters)[0]
        start = (torch.zeros_like(estimate[0]), torch.zeros_like(estimate[1]))
        values = evaluate(score(obs), [start, *params], args.seed)[:, 0].tolist()
        for k, ((mu, _), value) in enumerate(zip([start, *params], values)):
            a = torch.tanh(mu[0])
            path_rows.append({"pair": pair, "planner": name, "iteration": k,
                              "a_x": f"{a[dims[0]].item():.6g}", "a_y": f"{a[dims[1]].item():.6g}",
                              "objective": f"{value:.6g}"})
        finals[name] = values[-1]
    best = max(grid_rows, key=lambda r: float(r["objective"]))
    summary = {"analysis": "surface", **_settings(args, agent, 1), "state": args.state,
               "states_file": args.states, "dims": list(dims), "grid": args.grid,
               "estimate_planner": agent.cfg.planner.name,
               "grid_best": {k: float(best[k]) for k in ("a_x", "a_y", "objective")},
               "final_objective": finals}
    write_csv(out / "surface.csv", grid_rows)
    write_csv(out / "surface_paths.csv", path_rows)
    write_json(out / "summary.json", summary)
    plots.plot_surface(out)
    lines = [f"best J on the grid of a[{dims[0]}], a[{dims[1]}]: {best['objective']} at "
             f"({best['a_x']}, {best['a_y']}); final J of each planner (all dims free):"]
    lines += [f"  {name:<10} {value:.4g}" for name, value in finals.items()]
    return {**summary, "out": str(out), "table": "\n".join(lines)}


def cmd_bias(args) -> dict:
    import torch

    from mbiapo.analyses import plots
    from mbiapo.analyses.bias import estimated_q, monte_carlo, uniform_pairs
    from mbiapo.analyses.common import mean_std, output_dir, write_csv, write_json

    _positive(pairs=args.pairs, rollouts=args.rollouts, horizon=args.horizon)
    agent = _agent(args)
    out = output_dir(args.out, args.force)
    beta = agent.cfg.value.beta_collect if args.beta is None else args.beta
    pairs = uniform_pairs(agent.cfg.env.id, args.pairs, args.seed)
    q_mc = monte_carlo(agent, pairs, args.rollouts, args.horizon, args.seed)
    q_hat = estimated_q(agent, pairs, beta)
    bias = torch.as_tensor(q_hat - q_mc.mean(1))
    write_csv(out / "bias.csv", [
        {"pair": k, "q_hat": f"{q_hat[k]:.6g}", "q_mc": f"{q_mc[k].mean():.6g}",
         "q_mc_std": f"{q_mc[k].std():.6g}", "bias": f"{bias[k]:.6g}"}
        for k in range(args.pairs)])
    summary = {"analysis": "bias", **_settings(args, agent, args.pairs), "pairs": args.pairs,
               "rollouts": args.rollouts, "horizon": args.horizon,
               "discount_left_at_horizon": agent.cfg.train.gamma ** args.horizon,
               "alpha": agent.alpha, "bias": mean_std(bias),
               "q_hat_mean": float(q_hat.mean()), "q_mc_mean": float(q_mc.mean())}
    write_json(out / "summary.json", summary)
    plots.plot_bias(out)
    table = (f"value bias E[Q-hat - Q_MC] over {args.pairs} uniform state-action pairs: "
             f"{summary['bias']['mean']:.4g} ± {summary['bias']['std']:.3g} (Q-hat mean "
             f"{summary['q_hat_mean']:.4g}, Monte Carlo mean {summary['q_mc_mean']:.4g}, "
             f"{args.rollouts} rollouts x {args.horizon} steps)")
    return {**summary, "out": str(out), "table": table}


def cmd_plot(args) -> dict:
    from mbiapo.analyses.plots import replot

    return {"figures": [str(p) for p in replot(args.dir)]}


HANDLERS = {"states": cmd_states, "compare": cmd_compare, "gap": cmd_gap, "modes": cmd_modes,
            "surface": cmd_surface, "bias": cmd_bias, "plot": cmd_plot}
