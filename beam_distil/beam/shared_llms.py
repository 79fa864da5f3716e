"""One loaded LLM client per configuration per process, shared by every DoFn instance and thread.

Beam makes a DoFn instance per thread and per stage; each calling ``load()`` would open its own connection pool
and its own concurrency cap, so ``max_concurrency`` would no longer bound what a process sends.

Why not ``apache_beam.utils.shared.Shared``: it keeps an object alive only while DoFn instances hold it, so a
client could be dropped and made again between stages, losing its connections and its adaptive concurrency
limit; and a native model (llama.cpp) must be unloaded explicitly. Here a client lives as long as its process,
is shared by every task with the same configuration (one cap per configuration, as documented), and is
unloaded at exit::

    client = acquire(task.llm)   # in DoFn.setup; the same object for every equal configuration in the process
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Dict, Tuple

from beam_distil.models.base import LLM

_lock = threading.Lock()
_clients: Dict[Tuple[int, str], LLM] = {}
_loads = 0


def loads_in_this_process() -> int:
    """How many clients/models this process has loaded (each distinct configuration once)."""
    return _loads


@atexit.register
def _unload_all() -> None:
    # Native clients (llama.cpp) must be freed while the interpreter can still run their finalisers.
    with _lock:
        for client in _clients.values():
            client.unload()
        _clients.clear()


def acquire(llm: LLM) -> LLM:
    """A loaded copy of ``llm`` shared with every equal configuration in this process."""
    global _loads
    key = (os.getpid(), llm.client_fingerprint())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = llm.model_copy(deep=True)
            client.load()
            _clients[key] = client
            _loads += 1
        return client
