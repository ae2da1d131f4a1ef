"""Amortization gap (paper A.3, Fig. 6): from each planner's estimate lambda, Adam on lambda
(lr 5e-3, 100 steps) finds lambda-hat; the gap per state is J(lambda-hat) - J(lambda)."""

from torch import Tensor
from tqdm import tqdm

from mbiapo.analyses import plots
from mbiapo.analyses.common import Params, Setup, evaluate, follow, mean_std, write_csv
from mbiapo.planners import AdamPlanner, Objective, Planner


def amortization_gap(objective: Objective, eval_objective: Objective, obs: Tensor,
                     estimate: Params, steps: int = 100, lr: float = 5e-3,
                     seed: int = 0) -> tuple[Tensor, Tensor]:
    """J (B,) at the estimate (mu, log_std) (B, A) and at its refinement by ``steps`` Adam
    steps on ``objective``, both under ``eval_objective`` with the same random numbers."""
    refiner = AdamPlanner(obs.shape[1], estimate[0].shape[1], steps, lr)
    refined = refiner.plan(objective, obs, init=estimate, record=False)
    before, after = evaluate(eval_objective, [estimate, (refined.mu.detach(),
                                                         refined.log_std.detach())], seed)
    return before, after


def estimates(planners: dict[str, Planner], objective: Objective, obs: Tensor,
              extra_iters: int, seed: int = 0) -> dict[str, Params]:
    """Each planner's (mu, log_std) (B, A) after its own iterations; a trained planner with
    iterations also after ``extra_iters`` more, labelled "NAME+EXTRA". Every search starts
    from the same random numbers (``seed``)."""
    found = {}
    for name, planner in planners.items():
        found[name] = follow(planner, objective, obs, planner.iters, seed=seed)[0][-1]
        if planner.trainable and planner.iters > 1 and extra_iters:
            extra = follow(planner, objective, obs, planner.iters + extra_iters, seed=seed)
            found[f"{name}+{extra_iters}"] = extra[0][-1]
    return found


def run(setup: Setup, planners: dict[str, Planner], steps: int, lr: float, extra_iters: int,
        samples: int, eval_samples: int) -> dict:
    """``mbiapo gap``: Adam (``steps``, ``lr``, ``samples`` per J) from every estimate, both
    ends scored with ``eval_samples``; writes gap.csv, summary.json, gap.png."""
    obs = setup.obs
    found = estimates(planners, setup.objective(None)(obs), obs, extra_iters, setup.seed + 1)
    refine, score = setup.objective(samples)(obs), setup.objective(eval_samples)(obs)
    rows, results = [], {}
    for label, estimate in tqdm(found.items(), desc="gap", unit="planner", leave=False):
        before, after = amortization_gap(refine, score, obs, estimate, steps, lr, setup.seed)
        rows += [{"state": b, "planner": label, "J_estimate": f"{x:.6g}",
                  "J_refined": f"{y:.6g}", "gap": f"{y - x:.6g}"}
                 for b, (x, y) in enumerate(zip(before.tolist(), after.tolist()))]
        results[label] = {"J_estimate": mean_std(before), "J_refined": mean_std(after),
                          "gap": mean_std(after - before)}
    summary = {**setup.header("gap", len(obs)), "adam_steps": steps, "adam_lr": lr,
               "samples": samples, "eval_samples": eval_samples, "planners": results}
    write_csv(setup.out / "gap.csv", rows)
    return setup.finish(summary, plots.plot_gap, table(results))


def table(results: dict) -> str:
    """The printed gaps: J at the estimate, after refinement, and their difference."""
    lines = [f"{'planner':<14} {'J(estimate)':>20} {'J(refined)':>20} {'gap':>20}"]
    for label, r in results.items():
        cells = [f"{r[k]['mean']:.4g} ± {r[k]['std']:.3g}"
                 for k in ("J_estimate", "J_refined", "gap")]
        lines.append(f"{label:<14} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}")
    return "\n".join(lines)
