"""``mbiapo train``: online, offline (``--offline``) and resumed (``--resume``) runs; and
``mbiapo peer``: a peer baseline trained with a run config (mbiapo/peer.py)."""

import signal
import sys
from pathlib import Path

from mbiapo.config import compose
from mbiapo.errors import MbiapoError
from mbiapo.planners import PLANNERS
from mbiapo.value import VALUES


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train an agent online on a gymnasium task",
                       description="Train online. Writes OUT/config.yaml, OUT/metrics.csv, "
                       "OUT/checkpoint.pt (+ OUT/replay.h5). Ctrl-C saves a checkpoint.")
    p.add_argument("--env", help="gymnasium id, e.g. HalfCheetah-v5")
    p.add_argument("--planner", choices=PLANNERS.names())
    p.add_argument("--value", choices=VALUES.names(), help="value estimate (value.kind)")
    p.add_argument("--act-planner", choices=PLANNERS.names(), help="act with this planner "
                   "while --planner trains (train.act_planner), e.g. mppi-seq: MPC acting "
                   "with the trained planner as its prior")
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


    p = sub.add_parser("peer", help="train a peer baseline (stable-baselines3 SAC) with a run "
                       "config's budget, settings and evaluation",
                       description="Train stable-baselines3's SAC as the config says (see "
                       "mbiapo/peer.py for what is matched) and write OUT/config.yaml and "
                       "OUT/metrics.csv, as a run does, for 'mbiapo report'. Not resumable: "
                       "an unfinished peer run in OUT starts over.")
    p.add_argument("name", choices=["sb3-sac"], help="the peer")
    p.add_argument("--env", help="gymnasium id, e.g. HalfCheetah-v5")
    p.add_argument("--steps", type=int, help="environment steps (train.steps)")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--config", help="YAML file merged over the packaged configs")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.eval_every=2500")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _run_config(args, env: str | None):
    explicit = [f"train.steps={args.steps}"] if args.steps is not None else []
    explicit += [f"train.seed={args.seed}"] if args.seed is not None else []
    explicit += [f"value.kind={args.value}"] if args.value else []
    explicit += [f"train.act_planner={args.act_planner}"] if args.act_planner else []
    explicit += ["train.tensorboard=true"] if args.tensorboard else []
    explicit += [f"train.threads={args.threads}"] if hasattr(args, "threads") else []
    return compose(env, args.planner, args.config, [*args.overrides, *explicit])


def cmd_train(args) -> dict:
    from mbiapo.train import resume_run, start_offline, start_run

    if args.resume:
        if args.env or args.planner or args.value or args.act_planner or args.config or args.out \
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
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop saves like Ctrl-C
    try:
        last = trainer.run(getattr(args, "threads", None))
    except KeyboardInterrupt:
        print(f"interrupted at step {trainer.step}; checkpoint saved; continue with "
              f"'mbiapo train --resume {trainer.out}'", file=sys.stderr)
        raise SystemExit(130) from None
    finally:  # the caller's handler again (a test run under timeout, a notebook)
        signal.signal(signal.SIGTERM, previous)
    return {"out": str(trainer.out), **{k: v for k, v in last.items() if v != ""}}




def cmd_peer(args) -> dict:
    from mbiapo import peer

    explicit = [f"train.steps={args.steps}"] if args.steps is not None else []
    explicit += [f"train.seed={args.seed}"] if args.seed is not None else []
    explicit += [f"train.threads={args.threads}"] if hasattr(args, "threads") else []
    cfg = compose(args.env, None, args.config, [*args.overrides, *explicit])
    last = peer.train(cfg, args.out)
    return {"out": str(args.out), **{k: v for k, v in last.items() if v != ""}}


HANDLERS = {"train": cmd_train, "peer": cmd_peer}
