"""Long loops show progress on stderr (plan, evaluate, collect, states), and the --json
output on stdout stays one clean object."""

import json

from mbiapo.progress import EpisodeProgress
from mbiapo.train import start_run
from tests.helpers import run_cli, tiny_config


def test_episode_progress_ends_full_when_episodes_end_early(capsys):
    progress = EpisodeProgress(episodes=2, max_steps=10, desc="x")
    progress.steps(2)
    progress.episode_done(1)  # 9 unplayed steps count as done
    progress.steps(1)
    progress.episode_done(2)
    assert (progress.bar.n, progress.bar.total, progress.done) == (20, 20, 2)
    progress.close()


def test_commands_show_progress_on_stderr_and_keep_stdout_clean(tmp_path, capsys):
    run = tmp_path / "run"  # 50-step episodes
    start_run(tiny_config(extra=["train.steps=60", "train.eval_every=60"]), run).run()
    capsys.readouterr()
    for argv, shown in [
        (["evaluate", "--checkpoint", run, "--episodes", "2"], "episodes=0/2"),
        (["plan", "--checkpoint", run, "--episodes", "1"], "episodes=0/1"),
        (["collect", "--random", "--env", "InvertedPendulum-v5", "--episodes", "2",
          "--out", tmp_path / "d.h5"], "collecting InvertedPendulum-v5"),
        (["states", "--checkpoint", run, "--n", "20", "--episodes", "1", "--out",
          tmp_path / "s.h5"], "collecting states"),
    ]:
        code, out, err = run_cli(capsys, *argv, "--json")
        assert code == 0, err
        assert shown in err, (argv[0], err)
        assert isinstance(json.loads(out), dict)
