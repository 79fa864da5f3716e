"""Routing batches of rows to some of the downstream steps, as distilabel's ``routing_batch_function``.

Example::

    from beam_distil.pipeline import Pipeline, routing_batch_function, sample_n_steps

    @routing_batch_function(description="Half of the batches to the big model.")
    def big_or_small(steps: list[str]) -> list[str]:
        return [random.choice(steps)]          # `random` is seeded per batch: the same choice on every run

    def sample_two(downstream_step_names: list[str]) -> list[str]:   # a plain function works too
        return random.sample(downstream_step_names, k=2)

    with Pipeline("routed") as pipeline:
        load >> sample_n_steps(2) >> [gen_a, gen_b, gen_c] >> group   # each batch goes to 2 of the 3
        other.connect(gen_d, gen_e, gen_f, routing_batch_function=sample_two)
        third >> sample_two >> [gen_g, gen_h, gen_i]                   # the same, with arrows

    data = sample_n_steps(2).dump()                   # what `pipeline.save` writes for it
    RoutingBatchFunction.from_dict(data)              # built only from the registry (`register`)

Routing is decided per batch of the upstream step: rows ``k * batch_size`` to ``(k + 1) * batch_size - 1`` (by
generator position) form batch ``k``. The choice for batch ``k`` depends only on the function's ``seed``
(``sample_n_steps(2, seed=7)``, ``@routing_batch_function(seed=7)``), the upstream step's name and ``k``, so a
re-run, a retried Beam bundle or another runner mode routes every batch the same way. A function calling the
``random`` module (plain or decorated) draws from a generator seeded that way; the process's global generator is
neither used nor changed.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib
import random
import types
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from beam_distil.steps.registry import REGISTRY
from beam_distil.steps.serialization import TYPE_INFO_KEY, PipelineSerializationError, find_registered, where

if TYPE_CHECKING:
    from beam_distil.steps.base import _Step

RoutingFunction = Callable[[List[str]], List[str]]

# Where distilabel 1.5.3 defines sample_n_steps: what its files name, and what `dump` writes so that distilabel
# loads beam_distil's files.
DISTILABEL_ROUTING_MODULE = "distilabel.pipeline.routing_batch_function"


class RoutingError(ValueError):
    """A routing function returned something other than a non-empty subset of its downstream steps."""


class RoutingBatchFunction:
    """Wraps ``routing_function(steps) -> chosen steps``; placed between a step and a list of steps with ``>>``,
    or given to ``step.connect(..., routing_batch_function=...)``.

    Args:
        routing_function: distilabel's ``RoutingBatchFunc``: takes the downstream step names, returns the names
            the batch goes to. With ``takes_rng=True`` it also takes a ``random.Random`` seeded for the batch.
        description: shown by ``pipeline info`` and saved with the pipeline.
        factory: ``{"name": ..., "kwargs": {...}}`` when a routing factory (``sample_n_steps``) made it; saved as
            the factory and its arguments.
        seed: mixed into every batch's seed.
    """

    def __init__(
        self,
        routing_function: Union[RoutingFunction, Callable[[List[str], random.Random], List[str]]],
        description: Optional[str] = None,
        factory: Optional[Dict[str, Any]] = None,
        takes_rng: bool = False,
        seed: int = 0,
    ) -> None:
        self.fn = routing_function
        self.description = description
        self.seed = seed
        self.factory = factory
        self._takes_rng = takes_rng
        self.upstream: Optional["_Step"] = None
        self.downstream: List[str] = []

    @property
    def routing_function(self) -> Callable[..., List[str]]:
        """The wrapped function (distilabel's attribute name; ``fn`` is the same object)."""
        return self.fn

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

    # -- saving and loading ------------------------------------------------------------------------------

    def dump(self) -> Dict[str, Any]:
        """This routing function as JSON-compatible data, in distilabel's layout (``step``, ``description``,
        ``type_info``) plus its ``seed`` and ``downstream`` steps: what ``pipeline.save`` writes for it.

        A factory's call is saved as the factory and its arguments (distilabel's ``sample_n_steps`` name, so that
        distilabel loads it too); a user's function by its module and qualified name, which the loading process
        must have registered (``register``).

        Raises:
            PipelineSerializationError: a user's function that another process could not find by name (a lambda, a
                function defined inside another, one in ``__main__``, or one whose name does not import back to it).
        """
        data: Dict[str, Any] = {}
        if self.upstream is not None:
            data["step"] = self.upstream.name
        if self.description:
            data["description"] = self.description
        if self.factory is not None:
            factory_name = self.factory["name"]
            module = DISTILABEL_ROUTING_MODULE if (DISTILABEL_ROUTING_MODULE, factory_name) in ROUTING_FACTORIES else __name__
            # The seed is saved beside the call: distilabel's factory takes no seed and would refuse it.
            kwargs = {key: value for key, value in self.factory.get("kwargs", {}).items() if key != "seed"}
            data[TYPE_INFO_KEY] = {"module": module, "name": factory_name, "kwargs": kwargs}
        else:
            data[TYPE_INFO_KEY] = self._importable_name()
            data["takes_rng"] = bool(self._takes_rng)
        data["seed"] = self.seed
        data["downstream"] = list(self.downstream)
        return data

    def _importable_name(self) -> Dict[str, str]:
        """``{"module", "name"}`` under which another process finds the user's function (once registered there)."""
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", None)
        problem = None
        if not module or not qualname:
            problem = "it has no module or qualified name"
        elif "<locals>" in qualname or "<lambda>" in qualname:
            problem = f"{qualname!r} is defined inside a function or is a lambda"
        elif module == "__main__":
            problem = "it is defined in `__main__`, which another process cannot import"
        elif _function_at(module, qualname) is not self.fn:
            problem = f"`{module}.{qualname}` does not import back to the same function"
        if problem:
            step = f" of step {self.upstream.name!r}" if self.upstream is not None else ""
            raise PipelineSerializationError(
                f"Cannot save the routing function {self.name!r}{step}: {problem}. Define it at the top level of an"
                " importable module and register it where the pipeline is loaded (`from beam_distil.pipeline import"
                " register`), or use a factory such as sample_n_steps."
            )
        return {"module": str(module), "name": str(qualname)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: Optional[str] = None) -> "RoutingBatchFunction":
        """The routing function ``data`` (``dump()``'s output, or distilabel's) describes, built only from the
        registry: one of the project's routing factories (``sample_n_steps``, under its name or distilabel's)
        called with the saved arguments, or a function your code registered with ``register``. Nothing ``data``
        names is imported, and nothing else is called: a saved pipeline is untrusted input. ``source`` names the
        file in error messages.

        Raises:
            PipelineSerializationError: ``data`` is malformed, or names a function that is not registered.
        """
        # Files beam_distil wrote before it wrote distilabel's layout nest the function under `routing_batch_function`.
        nested = data.get("routing_batch_function", data) if isinstance(data, dict) else data
        upstream = data.get("step") if isinstance(data, dict) else None
        if not isinstance(nested, dict):
            raise PipelineSerializationError(f"A routing function is a mapping, got {nested!r}{where(source, upstream)}")
        type_info = nested.get(TYPE_INFO_KEY)
        # distilabel keeps a factory's arguments in `type_info`; older beam_distil files beside it.
        kwargs = nested.get("kwargs", type_info.get("kwargs") if isinstance(type_info, dict) else None)
        if kwargs is not None:
            if isinstance(kwargs, dict) and "seed" in nested and "seed" not in kwargs:
                # Saved beside the call, which distilabel's factory takes without one; every project factory takes it.
                kwargs = {**kwargs, "seed": nested["seed"]}
            routing = _made_by_factory(type_info, kwargs, source, upstream)
        else:
            target = find_registered(
                type_info,
                "Routing function",
                "routing function",
                REGISTRY.routing_function,
                lambda module: REGISTRY.names_in(module, "routing function"),
                REGISTRY.entry_point_errors,
                source,
                upstream,
            )
            if isinstance(target, RoutingBatchFunction):  # registered on top of @routing_batch_function
                function, takes_rng = target.fn, target._takes_rng
            elif callable(target):
                function, takes_rng = target, bool(nested.get("takes_rng", False))
            else:
                raise PipelineSerializationError(f"Routing function {type_info!r} is not callable{where(source, upstream)}")
            routing = cls(function, takes_rng=takes_rng, seed=nested.get("seed", 0))
        if nested.get("description") is not None:
            routing.description = nested["description"]
        routing.downstream = [str(step) for step in nested.get("downstream") or []]
        return routing


def _function_at(module: str, qualname: str) -> Any:
    """The function at ``module.qualname`` in this process (unwrapping a ``@routing_batch_function``), or
    ``None``. Only for saving: the module is the function's own, which the running code has imported."""
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found.fn if isinstance(found, RoutingBatchFunction) else found


def _made_by_factory(type_info: Any, kwargs: Any, source: Optional[str], upstream: Optional[str]) -> RoutingBatchFunction:
    """A routing function made by one of the project's routing factories (``sample_n_steps``), the only
    callables a saved pipeline may call with arguments of its choosing; checked before the call."""
    factory = find_registered(
        type_info,
        "Routing function",
        "routing factory",
        lambda module, name: ROUTING_FACTORIES.get((module, name)),
        lambda module: sorted(name for factory_module, name in ROUTING_FACTORIES if factory_module == module),
        REGISTRY.entry_point_errors,
        source,
        upstream,
        hint=" Only beam_distil's routing factories (sample_n_steps) are called with `kwargs`.",
    )
    if not isinstance(kwargs, dict):
        raise PipelineSerializationError(
            f"The arguments (`kwargs`) of routing function {type_info['name']!r} must be a mapping, got"
            f" {kwargs!r}{where(source, upstream)}"
        )
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as error:
        raise PipelineSerializationError(
            f"Cannot make routing function {type_info['name']!r}: {error}{where(source, upstream)}"
        ) from None


def as_routing_batch_function(routing: Any) -> RoutingBatchFunction:
    """``routing`` as a ``RoutingBatchFunction``: one is returned as it is, and a plain function
    ``f(downstream_step_names) -> chosen names`` (which distilabel's ``connect(..., routing_batch_function=f)``
    takes undecorated) is wrapped, its ``random`` calls seeded per batch like a decorated function's.

    Raises:
        TypeError: ``routing`` is not callable.
    """
    if isinstance(routing, RoutingBatchFunction):
        return routing
    if callable(routing):
        return RoutingBatchFunction(routing)
    raise TypeError(
        "routing_batch_function must be a function taking the list of downstream step names and returning the"
        " names each batch goes to (plain, or made by @routing_batch_function or sample_n_steps), got"
        f" {routing!r}."
    )


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
    fn: Union[RoutingFunction, str, None] = None, *, description: Optional[str] = None, seed: int = 0
) -> Any:
    """Decorator turning ``fn(steps: list[str]) -> list[str]`` into a ``RoutingBatchFunction``: bare
    (``@routing_batch_function``), or with arguments (``@routing_batch_function(description="...", seed=7)``;
    distilabel's positional ``@routing_batch_function("...")`` is the description)."""
    if isinstance(fn, str):
        description, fn = fn, None

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


# The project's routing factories: the only callables a saved pipeline may call with `kwargs` of its choosing,
# under beam_distil's name and distilabel's. Every argument they take is safe to take from an untrusted file.
ROUTING_FACTORIES: Dict[Tuple[str, str], Callable[..., RoutingBatchFunction]] = {
    (__name__, "sample_n_steps"): sample_n_steps,
    (DISTILABEL_ROUTING_MODULE, "sample_n_steps"): sample_n_steps,
}
