"""Evaluation videos: one file per episode, MP4 when an encoder is installed (imageio with
imageio-ffmpeg), else GIF (Pillow, which matplotlib brings; at half size and every other
frame, so that a 1000-step episode stays a few MB). Headless machines render with EGL
(``MUJOCO_GL=egl``, set by ``envs`` when there is no display)."""

import re
from pathlib import Path

import numpy as np

GIF_STRIDE = 2  # GIFs keep every other frame, at half the size


def _mp4_writer():
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the encoder imageio needs for MP4)
    except ImportError:
        return None
    return imageio


def episode_files(folder: Path, seed: int, episodes: int) -> list[Path]:
    """The files in ``folder`` that recording ``episodes`` episodes from ``seed`` would
    overwrite (``episode-<seed+i>.mp4`` or ``.gif``)."""
    taken = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        found = re.fullmatch(r"episode-(-?\d+)\.(mp4|gif)", path.name)
        if found and seed <= int(found[1]) < seed + episodes:
            taken.append(path)
    return taken


class EpisodeVideo:
    """Frames (H, W, 3) uint8 of one episode, written to ``path`` (without suffix) + .mp4 or
    .gif as they come (MP4) or at ``close`` (GIF)."""

    def __init__(self, path: Path, fps: int):
        self.imageio = _mp4_writer()
        self.fps = fps
        if self.imageio is not None:
            self.path = path.with_suffix(".mp4")
            self.writer = self.imageio.get_writer(self.path, fps=fps, macro_block_size=1)
        else:
            self.path = path.with_suffix(".gif")
            self.frames, self.count = [], 0

    def add(self, frame: np.ndarray) -> None:
        if self.imageio is not None:
            self.writer.append_data(frame)
            return
        if self.count % GIF_STRIDE == 0:
            self.frames.append(frame[::GIF_STRIDE, ::GIF_STRIDE])
        self.count += 1

    def close(self) -> Path:
        if self.imageio is not None:
            self.writer.close()
            return self.path
        from PIL import Image

        images = [Image.fromarray(frame) for frame in self.frames]
        images[0].save(self.path, save_all=True, append_images=images[1:], loop=0,
                       duration=round(1000 * GIF_STRIDE / self.fps))
        return self.path
