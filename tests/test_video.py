"""evaluate/plan --video DIR records each episode as a playable file: its first frame decodes
to the renderer's picture (480x480; GIFs at half size, every other frame)."""

import json

import numpy as np
import pytest

from mbiapo.train import start_run
from mbiapo.video import GIF_STRIDE
from tests.helpers import error_line, run_cli, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "run"  # 50-step episodes
    start_run(tiny_config(extra=["train.steps=60", "train.eval_every=60"]), out).run()
    return out


def _frames(path):
    if path.suffix == ".gif":
        from PIL import Image

        image = Image.open(path)
        first = np.asarray(image.convert("RGB"))
        return first, image.n_frames, GIF_STRIDE
    import imageio.v2 as imageio

    frames = imageio.mimread(path, memtest=False)
    return frames[0], len(frames), 1


@pytest.mark.parametrize("command", ["evaluate", "plan"])
def test_video_records_each_episode(run, tmp_path, capsys, command):
    code, out, err = run_cli(capsys, command, "--checkpoint", run, "--episodes", "2",
                             "--seed", "3", "--video", tmp_path / "videos", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert [p.rsplit("/", 1)[1].split(".")[0] for p in result["videos"]] == ["episode-3",
                                                                              "episode-4"]
    for path, length in zip(map(type(tmp_path), result["videos"]), result["lengths"]):
        first, count, stride = _frames(path)
        assert first.shape == (480 // stride, 480 // stride, 3) and first.max() > 0
        assert count == -(-(length + 1) // stride)  # the reset frame and one per step


def test_video_into_a_file_is_one_line(run, tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    line = error_line(capsys, "evaluate", "--checkpoint", run, "--video", tmp_path / "file")
    assert "--video" in line and "is a file, not a folder" in line
