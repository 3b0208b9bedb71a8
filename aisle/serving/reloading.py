"""Hot reload: swap in the index on disk (``/admin/reload``, or the watcher on each publish).

Any failure to load leaves the serving index in place; it is logged, counted in
``aisle_reload_failures`` and raised as ``ReloadRefused`` (a 409 from ``/admin/reload``). The
watcher outlives every failure, leaves a publish that failed alone until the disk changes
again (``Engine.changed_on_disk``), and never loads again the index already serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from aisle.errors import AisleError
from aisle.serving.batching import ShuttingDown, on_thread
from aisle.serving.engine import Engine
from aisle.serving.metrics import Metrics

log = logging.getLogger(__name__)


class ReloadRefused(AisleError):
    """A reload failed; the index that was serving still is. The message says why."""


def describe_failure(e: Exception) -> str:
    """A reload error as an operator reads it: our own errors say what to fix already; any
    other (a manifest missing a key, a malformed file) names its type as well."""
    if isinstance(e, (AisleError, OSError)):
        return str(e)
    return f"the index on disk could not be loaded ({type(e).__name__}: {e}); republish it"


def settle_heap() -> None:
    """Move everything loaded so far (the model, the index, its titles: millions of objects)
    out of the cyclic garbage collector's view. Otherwise each full collection walks them
    all, a pause of many milliseconds that lands on whichever request is running: the p99.
    What an earlier call froze is thawed first, or a reload's old model (held in reference
    cycles) could never be freed: each reload onto a new model would keep the old one."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def reload(eng: Engine, executor: Executor, metrics: Metrics,
                 unless_served: bool = False) -> str:
    """Load the index on disk (off the event loop) and swap it in; its version.
    ``unless_served`` (the watcher's): load nothing when the index on disk is the one serving
    already, as after an admin reload that ran while the watcher waited its turn.
    ``ShuttingDown`` (a 503, no failed reload) once the service has shut its threads."""
    try:
        version, swapped = await on_thread(executor, eng.reload, unless_served)
    except ShuttingDown:
        raise
    except Exception as e:
        metrics.reload_failures.inc()
        why = describe_failure(e)
        log.error("index reload refused, still serving %s: %s", eng.snapshot.version, why)
        raise ReloadRefused(f"reload refused, still serving {eng.snapshot.version}: {why}") from e
    metrics.index_version.info({"version": version})
    if swapped:  # else the watcher found it served (an admin reload beat it to the lock)
        settle_heap()
    return version


async def watch(eng: Engine, interval_s: float,
                reload_now: Callable[[Engine], Awaitable[str]]) -> None:
    """Every ``interval_s``, ``reload_now`` a new index published on disk. Nothing ends the
    watch but cancellation (shut-down)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            if eng.changed_on_disk():
                await reload_now(eng)
        except ReloadRefused:
            pass  # logged and counted by reload; the next publish is picked up
        except Exception:
            log.exception("index watcher: unexpected error; watching on")
