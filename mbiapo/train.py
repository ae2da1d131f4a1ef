"""Starting and resuming training runs, online (online.py) or offline (offline.py): the
caller picks the kind for a new run; a resumed run's checkpoint says which it is. Every
check runs before the run folder is touched (run_folder.py)."""

import copy
import sys
from pathlib import Path

from omegaconf import DictConfig

from mbiapo import run_folder
from mbiapo.checkpoint import check_env_matches, load_agent
from mbiapo.datasets import Dataset
from mbiapo.envs import env_dims
from mbiapo.metrics_log import summary_writer
from mbiapo.offline import OfflineTrainer
from mbiapo.online import OnlineTrainer
from mbiapo.trainer import Trainer

__all__ = ["OfflineTrainer", "OnlineTrainer", "Trainer", "resume_run", "start_offline",
           "start_run"]


def _check_new(cfg: DictConfig, out: Path) -> None:
    """Everything a new run needs, checked before any work: the folder, and tensorboard when
    ``train.tensorboard`` asks for it (one line saying how to install it)."""
    run_folder.check_new_run(out)
    if cfg.train.tensorboard:
        summary_writer()


def start_run(cfg: DictConfig, out: Path) -> OnlineTrainer:
    """A new online run in ``out``."""
    _check_new(cfg, out)
    trainer = OnlineTrainer(cfg, out)
    trainer.held = run_folder.start(out, cfg)
    return trainer


def start_offline(cfg: DictConfig, out: Path, data: Dataset) -> OfflineTrainer:
    """A new offline run in ``out`` on a dataset read by ``offline.prepare``."""
    _check_new(cfg, out)
    trainer = OfflineTrainer(cfg, out, data)
    trainer.held = run_folder.start(out, cfg)
    return trainer


def resume_run(out: Path, steps: int | None = None) -> Trainer:
    """The run in ``out``, continued to ``steps`` (default: its ``train.steps``)."""
    run_folder.check_resumable(out)
    held = run_folder.lock(out)
    agent, payload = load_agent(out / run_folder.CHECKPOINT)
    if agent.cfg.train.tensorboard:
        summary_writer()
    before = copy.deepcopy(agent.cfg)
    agent.cfg.train.steps = run_folder.resume_target(out, payload["step"], steps,
                                                     before.train.steps)
    edits = run_folder.report_config_edits(out, before)
    if "offline_dataset" in payload:
        trainer = OfflineTrainer.resume_from(out, agent, payload)
    else:
        trainer = OnlineTrainer(agent.cfg, out, agent)
        check_env_matches(payload, *env_dims(trainer.env), agent.cfg.env.id)
    trainer.held = held
    run_folder.recover(out, payload["step"], online=trainer.keeps_replay)
    trainer.restore(payload)
    run_folder.update_config(out, before, agent.cfg)
    if edits:
        print(f"mbiapo: warning: {edits}", file=sys.stderr)
    return trainer
