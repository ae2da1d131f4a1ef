"""``mbiapo evaluate`` and ``mbiapo plan``: run a checkpoint's agent in its environment,
with its own planner or another one, against its own value estimate or (``plan
--model-based``) a model-based one."""

import argparse
from pathlib import Path

from mbiapo.errors import MbiapoError
from mbiapo.paths import check_writable_folder
from mbiapo.planners import PLANNERS


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--planner", choices=PLANNERS.names(), help="plan with this planner "
                   "(default: the one the run acted with, train.act_planner, else the one "
                   "it trained)")
    p.add_argument("--iters", type=int, help="planner iterations per action")
    p.add_argument("--episodes", type=int, default=10, help="episodes to run")
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed SEED+i")
    p.add_argument("--env", help="environment to run in, for a run trained offline on a "
                   "dataset that names none (else the checkpoint's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--video", type=Path, metavar="DIR", help="record each episode to "
                   "DIR/episode-<seed>.mp4 (.gif without an MP4 encoder; headless: EGL)")
    p.add_argument("--true-model", action="store_true", help="sequence planners (mppi-seq, "
                   "cem-seq) plan through the MuJoCo simulator itself, from copies of each "
                   "live episode's state: the ground-truth check of a planner")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("overrides", nargs="*", metavar="planner.key=value",
                   help="settings of an untrained --planner, e.g. planner.population=50")


def add_parsers(sub) -> None:
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
        from mbiapo.video import episode_files

        check_writable_folder(args.video, "--video")
        taken = episode_files(args.video, args.seed, args.episodes)
        if taken:
            raise MbiapoError(f"--video {args.video} already holds {taken[0].name}"
                              f"{f' and {len(taken) - 1} more' if len(taken) > 1 else ''}; "
                              f"pick another folder or --seed, or move them")
    if args.true_model:
        from mbiapo.true_model import SimulatorDynamics

        agent.dynamics = SimulatorDynamics(agent.cfg.env.id)
    if args.planner is None and not args.overrides:
        return agent, agent.act_planner  # how the run acted: train.act_planner or its own
    return agent, agent.planner_named(args.planner, args.overrides)


def _with_model(agent, planner):
    """A sequence planner needs a model to plan through: say so before any episode runs."""
    from mbiapo.planners.sequence import check_model

    check_model(planner, agent.dynamics is not None)
    return agent, planner


def cmd_evaluate(args) -> dict:
    from mbiapo.evaluate import play_and_summarize

    agent, planner = _with_model(*_load_for_run(args))
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
        agent, planner = _with_model(*_load_for_run(args))
        return play_and_summarize(agent, args.planner, planner, _episodes(args), latency=True,
                                  compile=args.compile)
    if args.true_model:
        raise MbiapoError("--true-model and --model-based are two models to plan through: "
                          "pass one")
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


HANDLERS = {"evaluate": cmd_evaluate, "plan": cmd_plan}
