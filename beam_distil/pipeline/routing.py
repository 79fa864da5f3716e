"""Routing batches of rows to some of the downstream steps, as distilabel's ``routing_batch_function``.

Example::

    from beam_distil.pipeline import Pipeline, routing_batch_function, sample_n_steps

    @routing_batch_function(description="Half of the batches to the big model.")
    def big_or_small(steps: list[str]) -> list[str]:
        return [random.choice(steps)]          # `random` is seeded per batch: the same choice on every run

    with Pipeline("routed") as pipeline:
        load >> sample_n_steps(2) >> [gen_a, gen_b, gen_c] >> group   # each batch goes to 2 of the 3

Routing is decided per batch of the upstream step: rows ``k * batch_size`` to ``(k + 1) * batch_size - 1`` (by
generator position) form batch ``k``. The choice for batch ``k`` depends only on the function's ``seed``
(``sample_n_steps(2, seed=7)``, ``@routing_batch_function(seed=7)``), the upstream step's name and ``k``, so a re-run, a retried Beam bundle or another runner mode routes every
batch the same way.
"""

from __future__ import annotations

import builtins
import hashlib
import random
import types
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Union

if TYPE_CHECKING:
    from beam_distil.steps.base import _Step

RoutingFunction = Callable[[List[str]], List[str]]


class RoutingError(ValueError):
    """A routing function returned something other than a non-empty subset of its downstream steps."""


class RoutingBatchFunction:
    """Wraps ``fn(steps) -> chosen steps``; placed between a step and a list of steps with ``>>``."""

    def __init__(
        self,
        fn: Union[RoutingFunction, Callable[[List[str], random.Random], List[str]]],
        description: Optional[str] = None,
        factory: Optional[Dict[str, Any]] = None,
        takes_rng: bool = False,
        seed: int = 0,
    ) -> None:
        self.fn = fn
        self.description = description
        self.seed = seed
        self.factory = factory
        self._takes_rng = takes_rng
        self.upstream: Optional["_Step"] = None
        self.downstream: List[str] = []

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __repr__(self) -> str:
        return f"RoutingBatchFunction({self.name}, downstream={self.downstream})"

    # -- graph -------------------------------------------------------------------------------------------

    def __rrshift__(self, upstream: "_Step") -> "RoutingBatchFunction":
        from beam_distil.steps.base import _Step

        if not isinstance(upstream, _Step):
            return NotImplemented
        self.upstream = upstream
        return self

    def __rshift__(self, steps: Union["_Step", Sequence["_Step"]]) -> Any:
        if self.upstream is None:
            raise ValueError(f"Routing function {self.name!r} needs an upstream step: write `step >> {self.name} >> [...]`.")
        targets = [steps] if not isinstance(steps, (list, tuple)) else list(steps)
        self.upstream.connect(*targets, routing_batch_function=self)
        return steps

    # -- choosing ----------------------------------------------------------------------------------------

    def choose(self, steps: List[str], upstream_name: str, batch_index: int) -> List[str]:
        """The steps batch ``batch_index`` goes to, the same for the same arguments on any machine."""
        digest = hashlib.sha256(f"{self.seed}:{upstream_name}:{batch_index}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        if self._takes_rng:
            chosen = self.fn(list(steps), rng)  # type: ignore[call-arg]
        else:
            chosen = drawing_from(self.fn, rng)(list(steps))  # type: ignore[call-arg]
        return self._checked(list(chosen) if chosen is not None else [], steps, batch_index)

    def _checked(self, chosen: List[str], steps: List[str], batch_index: int) -> List[str]:
        unknown = [name for name in chosen if name not in steps]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            reason = (
                f"names {unknown}, which are not downstream steps" if unknown
                else "is empty" if not chosen
                else "repeats a step"
            )
            raise RoutingError(
                f"Routing function {self.name!r} for batch {batch_index} returned {chosen}, which {reason};"
                f" it must return a non-empty subset of {steps}."
            )
        # Downstream order, not the function's, so the choice does not depend on how it was drawn.
        return [name for name in steps if name in chosen]


class _RandomModuleDrawingFrom:
    """Stands for the ``random`` module inside a routing function: its draws come from ``rng``, everything else
    (``random.Random``, constants) from the module."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rng, name) if hasattr(self._rng, name) else getattr(random, name)


def drawing_from(function: Any, rng: random.Random) -> Any:
    """A copy of ``function`` whose ``random`` calls draw from ``rng``.

    distilabel's routing functions call ``random.sample(...)`` or ``random.choice(...)``. Seeding the global
    generator would change the state every other user of ``random`` in the process sees; instead the copy gets
    its own view of its module's globals, where ``random`` (imported at module level or inside the function,
    and names imported from it such as ``from random import choice``) draws from ``rng``. Helpers the function
    calls keep the global generator. A callable that is not a plain function is returned as it is: give it the
    ``rng`` argument instead (``RoutingBatchFunction(..., takes_rng=True)``) to make it deterministic.
    """
    if not isinstance(function, types.FunctionType):
        return function
    seeded_module = _RandomModuleDrawingFrom(rng)
    module_random = random._inst  # type: ignore[attr-defined]
    scope = dict(function.__globals__)
    for name, value in function.__globals__.items():
        if value is random:
            scope[name] = seeded_module
        elif getattr(value, "__self__", None) is module_random:
            scope[name] = getattr(rng, value.__name__)

    def importing(name: str, *args: Any, **kwargs: Any) -> Any:
        return seeded_module if name == "random" else builtins.__import__(name, *args, **kwargs)

    scope["__builtins__"] = {**vars(builtins), "__import__": importing}
    copy = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__, function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy


def routing_batch_function(
    fn: Optional[RoutingFunction] = None, *, description: Optional[str] = None, seed: int = 0
) -> Any:
    """Decorator turning ``fn(steps: list[str]) -> list[str]`` into a ``RoutingBatchFunction``."""

    def wrap(function: RoutingFunction) -> RoutingBatchFunction:
        return RoutingBatchFunction(function, description=description, seed=seed)

    return wrap(fn) if fn is not None else wrap


def sample_n_steps(n: int, seed: int = 0) -> RoutingBatchFunction:
    """Routes each batch to ``n`` of the downstream steps, drawn at random (seeded per batch)."""
    if n < 1:
        raise ValueError(f"sample_n_steps(n) needs n >= 1, got {n}")

    def sample_n(steps: List[str], rng: random.Random) -> List[str]:
        if n > len(steps):
            raise RoutingError(f"sample_n_steps({n}) cannot choose {n} of the {len(steps)} downstream steps {steps}.")
        return rng.sample(steps, n)

    sample_n.__name__ = f"sample_{n}_steps"
    return RoutingBatchFunction(
        sample_n,
        description=f"Sample {n} steps from the list of downstream steps.",
        factory={"name": "sample_n_steps", "kwargs": {"n": n, "seed": seed}},
        takes_rng=True,
        seed=seed,
    )
