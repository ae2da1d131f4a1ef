"""Progress bars for loops that run longer than a few seconds. They go to stderr (the
``--json`` output on stdout stays clean), refresh at most once a second and vanish when done."""

import sys

from tqdm import tqdm


def bar(total: int | None, desc: str, unit: str, postfix: dict | None = None) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=1.0,
                dynamic_ncols=True, leave=False, postfix=postfix)


class EpisodeProgress:
    """A bar over the environment steps of ``episodes`` episodes of at most ``max_steps``
    steps each (the env's time limit); an episode that ends early counts its unplayed steps as
    done, so the bar ends full. Shows the finished episodes beside it."""

    def __init__(self, episodes: int, max_steps: int, desc: str):
        self.episodes, self.done, self.max_steps = episodes, 0, max_steps
        self.bar = bar(episodes * max_steps or None, desc, "step",  # None: no time limit
                       {"episodes": f"0/{episodes}"})

    def steps(self, n: int) -> None:
        """``n`` episodes took a step."""
        self.bar.update(n)

    def episode_done(self, length: int) -> None:
        self.done += 1
        self.bar.set_postfix(episodes=f"{self.done}/{self.episodes}", refresh=False)
        self.bar.update(max(self.max_steps - length, 0))

    def close(self) -> None:
        self.bar.close()
