"""Progress for long loops: a tqdm bar on a terminal, otherwise a log line every ~10 % (CI logs, pipes)."""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("fracture_edge.progress")


def progress(items: Iterable[T], desc: str, total: int | None = None, enabled: bool | None = None) -> Iterator[T]:
    """Wrap `items` in a progress bar on stderr when it is a terminal (or enabled=True)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True, leave=False)
            return
    yield from _logged(items, desc, total)


def _logged(items: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    """Log '<desc>: i/total (pct), elapsed' about every 10 % of a long loop."""
    if not total or total < 10:
        yield from items
        return
    started = time.perf_counter()
    step = max(1, total // 10)
    for i, item in enumerate(items, start=1):
        yield item
        if i % step == 0 or i == total:
            log.info("%s: %d/%d (%d%%), %.0f s", desc, i, total, 100 * i // total, time.perf_counter() - started)
