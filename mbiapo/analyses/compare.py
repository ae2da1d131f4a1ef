"""Compare planners on saved states (paper B.4, Fig. 18): every planner starts from the same
initialisation on every state, batched; J after each iteration is evaluated afterwards with
one common estimator (more samples, the same random numbers for every planner), so the
timings cover the planners' own work only."""

import sys
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from mbiapo.analyses import plots
from mbiapo.analyses.common import (
    ObjectiveFn,
    Params,
    Setup,
    evaluate,
    follow,
    mean_std,
    write_csv,
)
from mbiapo.planners import Plan, Planner


@dataclass
class Trace:
    """One planner's search over B states: ``values`` J (K, B) after each iteration,
    ``seconds[k]`` the wall-clock since the start after iteration k+1, ``params`` the
    (mu, log_std) (B, A) after each iteration; for a sequence planner, ``score`` (B,) is its
    own H-step score of its final mean action sequence (None for single-step planners)."""

    values: Tensor
    seconds: list[float]
    params: list[Params]
    score: Tensor | None = None


def sequence_score(planner: Planner, objective, plan: Plan) -> Tensor | None:
    """The H-step score (B,) of a sequence plan's mean actions, as the planner scores
    them (with or without its terminal value), or None for a single-step plan."""
    if plan.sequence is None:
        return None
    with torch.no_grad():
        torch.manual_seed(0)  # the same ensemble members and terminal samples for all
        actions = torch.tanh(plan.sequence).unsqueeze(1)  # (B, 1, H, A)
        return objective.sequence.score(actions, planner.terminal_value)[:, 0]


def compare(planners: dict[str, Planner], plan_fn: ObjectiveFn, eval_fn: ObjectiveFn,
            obs: Tensor, iters: int, seed: int = 0) -> dict[str, Trace]:
    """Run each planner for ``iters`` iterations (a direct planner has one) from mu = 0,
    sigma = 1 on all states obs (B, S) at once, after a short untimed warm-up run."""
    plan_objective, eval_objective = plan_fn(obs), eval_fn(obs)
    traces = {}
    with tqdm(total=2 * iters * len(planners), desc="compare", unit="iter", leave=False,
              file=sys.stderr) as bar:
        for name, planner in planners.items():
            bar.set_postfix_str(name)
            follow(planner, plan_objective, obs, min(iters, 2))
            # seed + 1: the planners' samples differ from the estimator's
            params, seconds, plan = follow(planner, plan_objective, obs, iters,
                                           on_step=bar.update, seed=seed + 1)
            bar.update(iters - len(params))  # a direct planner stops after one
            values = evaluate(eval_objective, params, seed, on_step=bar.update)
            bar.update(iters - len(params))
            traces[name] = Trace(values, seconds, params,
                                 sequence_score(planner, eval_objective, plan))
    return traces


def iterations_to_reach(curve: list[float], target: float) -> int | None:
    """The first iteration (1-based) whose value is >= target, or None."""
    return next((k + 1 for k, value in enumerate(curve) if value >= target), None)


def reference_point(traces: dict[str, Trace], trained: str | None) -> tuple[str, int] | None:
    """What the others must reach: the ``trained`` planner after min(5, its iterations)
    iterations (the paper's: the iterative planner after 5; a direct one's single step)."""
    if trained not in traces:
        return None
    return trained, min(5, len(traces[trained].seconds))


def summarize(traces: dict[str, Trace], trained: str | None = None) -> dict:
    """Per planner: J after 1, 5 (where the run had 5) and K iterations (mean and std over
    states; a planner that stops early, as a direct one does, keeps its last J), seconds per
    iteration, milliseconds per state (the whole search), a sequence planner's H-step
    score, and the iterations needed to reach the reference point (``reference_point``);
    plus the reference's time per iteration relative to each other planner's."""
    reference = reference_point(traces, trained)
    target = None
    if reference:
        name, k = reference
        target = traces[name].values[k - 1].mean().item()
    planners = {}
    ran = max(len(trace.seconds) for trace in traces.values())  # what the run asked for
    for name, trace in traces.items():
        iters = len(trace.seconds)
        curve = trace.values.mean(1).tolist()
        planners[name] = {
            "iterations": iters,
            **{f"J_at_{k}": mean_std(trace.values[min(k, iters) - 1]) for k in (1, 5)
               if k <= ran},
            "J_final": mean_std(trace.values[-1]),
            "seconds_per_iteration": trace.seconds[-1] / iters,
            "ms_per_state": 1e3 * trace.seconds[-1] / trace.values.shape[1],
            "h_step_score": None if trace.score is None else mean_std(trace.score),
            "iterations_to_reference": None if target is None or name == reference[0]
            else iterations_to_reach(curve, target),
        }
    summary = {"reference": None if reference is None else
               {"planner": reference[0], "iteration": reference[1], "J_mean": target},
               "planners": planners}
    if reference:
        ref = planners[reference[0]]["seconds_per_iteration"]
        for other, row in planners.items():
            if other != reference[0]:
                summary[f"time_per_iteration_{reference[0]}_vs_{other}"] = (
                    ref / row["seconds_per_iteration"])
    return summary


def csv_rows(traces: dict[str, Trace]) -> list[dict]:
    """Long format: planner, iteration, seconds, state, objective."""
    return [{"planner": name, "iteration": k + 1, "seconds": f"{trace.seconds[k]:.6g}",
             "state": b, "objective": f"{value:.6g}"}
            for name, trace in traces.items()
            for k, row in enumerate(trace.values.tolist())
            for b, value in enumerate(row)]


def table(summary: dict) -> str:
    """The printed comparison."""
    ref = summary["reference"]
    reach = f"iters to {ref['planner']}@{ref['iteration']} ({ref['J_mean']:.4g})" if ref else ""
    rows = [f"{'planner':<10} {'J@1':>18} {'J@5':>18} {'J@K (K)':>24} {'ms/iter':>9} "
            f"{'ms/state':>9} {'H-step score':>18}  {reach}"]
    for name, p in summary["planners"].items():
        cells = [f"{p[key]['mean']:.4g} ± {p[key]['std']:.3g}" if key in p else "—"
                 for key in ("J_at_1", "J_at_5", "J_final")]
        score = p["h_step_score"]
        score = "—" if score is None else f"{score['mean']:.4g} ± {score['std']:.3g}"
        if name == (ref or {}).get("planner"):
            steps = "(reference)"
        elif ref:
            steps = p["iterations_to_reference"] or "not reached"
        else:
            steps = ""
        final = f"{cells[2]} ({p['iterations']})"
        rows.append(f"{name:<10} {cells[0]:>18} {cells[1]:>18} {final:>24} "
                    f"{1e3 * p['seconds_per_iteration']:>9.3g} {p['ms_per_state']:>9.3g} "
                    f"{score:>18}  {steps}")
    for key, value in summary.items():
        if key.startswith("time_per_iteration"):
            rows.append(f"{key.replace('_', ' ')}: {value:.2f}x")
    return "\n".join(rows)


def run(setup: Setup, planners: dict[str, Planner], iters: int, samples: int | None,
        eval_samples: int, overrides: list[str]) -> dict:
    """``mbiapo compare``: every planner on the saved states, ``samples`` per J while
    planning and ``eval_samples`` to score; writes compare.csv, summary.json, compare.png."""
    agent = setup.agent
    traces = compare(planners, setup.objective(samples), setup.objective(eval_samples),
                     setup.obs, iters, setup.seed)
    summary = {**setup.header("compare", len(setup.obs)), "iters": iters,
               "samples": samples or agent.cfg.planner.samples, "eval_samples": eval_samples,
               "overrides": overrides, **summarize(traces, agent.cfg.planner.name)}
    write_csv(setup.out / "compare.csv", csv_rows(traces))
    return setup.finish(summary, plots.plot_compare, table(summary))
