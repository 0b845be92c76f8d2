"""Progress of a run with tqdm: a live bar on a terminal, one finished line per epoch in a log.

    bar = Progress(sys.stderr, total=n_batches, desc="epoch 3/30")
    bar.update("loss 0.41 acc 88.0%")          # after each batch (drawn on a terminal only)
    bar.close("loss 0.40 acc 88.2% test 91.1%")  # the epoch's line, on a terminal and in a log alike
"""

from __future__ import annotations

import time
from typing import TextIO

from tqdm import tqdm

__all__ = ["BAR_FORMAT", "Progress"]

#: The line of an epoch: ``epoch 3/30 [#######-----] 12/23, loss 0.41 acc 88.0% 00:01``.
BAR_FORMAT = "{desc} [{bar:24}] {n_fmt}/{total_fmt}{postfix} {elapsed}"


def _is_terminal(stream: TextIO | None) -> bool:
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


class Progress:
    """A tqdm bar over ``total`` batches on ``stream`` (None: silent). On a terminal it redraws in place;
    elsewhere (a log, a pipe) it writes only the finished line, once, at :meth:`close`."""

    def __init__(self, stream: TextIO | None, total: int, desc: str) -> None:
        self.stream, self.total, self.desc = stream, total, desc
        self.start = time.perf_counter()
        self.bar = (tqdm(total=total, desc=desc, file=stream, bar_format=BAR_FORMAT, ascii=" #", mininterval=0.1,
                         leave=True) if _is_terminal(stream) else None)

    @property
    def live(self) -> bool:
        """Whether :meth:`update` draws anything (compute its ``info`` only then: it may cost a sync)."""
        return self.bar is not None

    def update(self, info: str = "") -> None:
        """One more batch done; ``info`` (e.g. the running loss) is shown on a terminal."""
        if self.bar is not None:
            self.bar.set_postfix_str(info, refresh=False)
            self.bar.update()

    def close(self, info: str = "") -> None:
        """The finished line with ``info``."""
        if self.bar is not None:
            self.bar.set_postfix_str(info, refresh=False)
            self.bar.update(self.total - self.bar.n)
            self.bar.close()
        elif self.stream is not None:
            line = tqdm.format_meter(self.total, self.total, time.perf_counter() - self.start, prefix=self.desc,
                                     postfix=info, bar_format=BAR_FORMAT, ascii=" #")
            self.stream.write(line + "\n")
            self.stream.flush()
