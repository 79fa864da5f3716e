"""What a saved pipeline may name: the step, task, LLM and embedding classes and the routing functions that
``Pipeline.from_file``/``from_dict`` will build, looked up by their ``type_info: {module, name}``.

A pipeline file is untrusted input (it may come from a URL or a colleague). Loading one never imports a module
named in the file and never calls anything the file names unless it is registered here:

* beam_distil's own classes: every step, task, LLM and embedding class (abstract ones too) of the modules under
  ``beam_distil.steps`` and ``beam_distil.models``, by the module that defines it (what ``save`` writes,
  ``beam_distil.steps.tasks.text_generation.TextGeneration``) and by any of those modules that imports it (the
  public packages of a hand-written file, ``beam_distil.steps.tasks.TextGeneration``); and the routing
  factories of ``beam_distil.pipeline.routing`` (``sample_n_steps``), the only callables a file may call with
  ``kwargs`` of its choosing.
* Your classes and routing functions, registered by your code with ``register``, in a module that is imported
  before the pipeline is loaded, or named by an entry point of the ``beam_distil.registry`` group in the
  distribution that ships them. The entry points are loaded once per process, the first time a lookup misses:
  they name code that is installed, never code named by the file.

Example::

    from beam_distil.pipeline import Pipeline, register, routing_batch_function
    from beam_distil.steps import Step, StepInput, StepOutput

    @register
    class Upper(Step):
        @property
        def inputs(self): return ["text"]
        @property
        def outputs(self): return ["upper"]
        def process(self, inputs: StepInput) -> StepOutput:
            yield [{**row, "upper": row["text"].upper()} for row in inputs]

    @register
    @routing_batch_function
    def first_two(steps: list[str]) -> list[str]:
        return steps[:2]

    Pipeline.from_file("pipeline.yaml")   # may now name my_package.steps.Upper and my_package.steps.first_two

    # or, so that `beam-distil pipeline run` and the Flex Template find them without importing your module
    # first, in the pyproject.toml of the distribution that ships it:
    #   [project.entry-points."beam_distil.registry"]
    #   my_steps = "my_package.steps"          # a module (its @register decorators run), or module:object

``@routing_batch_function`` alone does not register a function: in-process routing (notebooks, local
functions, tests) needs no registration, and one rule, "a file may name only what is registered", covers
classes and functions alike. Registering again under the same name replaces the earlier entry (a notebook
cell run twice).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import threading
import types
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from pydantic import BaseModel

from beam_distil.pipeline.routing import RoutingBatchFunction, sample_n_steps

ENTRY_POINT_GROUP = "beam_distil.registry"

TypeKey = Tuple[str, str]
_Registered = TypeVar("_Registered")

# The packages whose modules are walked for the project's own classes. Fixed here: a lookup never adds to it.
_PROJECT_PACKAGES = ("beam_distil.steps", "beam_distil.models")

# The project's routing factories: the only targets a file may call with `kwargs` of its choosing.
_ROUTING_FACTORIES: Dict[TypeKey, Callable[..., RoutingBatchFunction]] = {
    ("beam_distil.pipeline.routing", "sample_n_steps"): sample_n_steps,
}

HOW_TO_REGISTER = (
    "register it with `@register` (`from beam_distil.pipeline import register`) in a module imported before the"
    f" pipeline is loaded, or declare an entry point in the `{ENTRY_POINT_GROUP}` group of the package that"
    " defines it"
)


def _key(obj: Any) -> TypeKey:
    return (str(getattr(obj, "__module__", "")), str(getattr(obj, "__qualname__", "")))


def _project_modules() -> Iterator[types.ModuleType]:
    """The modules under ``_PROJECT_PACKAGES``, imported (by fixed names found on disk, never from a file)."""
    for package_name in _PROJECT_PACKAGES:
        package = importlib.import_module(package_name)
        yield package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            yield importlib.import_module(info.name)


def _project_classes() -> Dict[TypeKey, type]:
    from beam_distil.models.base import LLM
    from beam_distil.models.embeddings.base import Embeddings
    from beam_distil.steps.base import _Step

    bases = (_Step, LLM, Embeddings)
    classes: Dict[TypeKey, type] = {}
    for module in _project_modules():
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, bases)
                and value.__module__.startswith("beam_distil.")
            ):
                # The defining module's name (what `dump` writes) and the importing one's (hand-written files).
                classes[_key(value)] = value
                classes[(module.__name__, name)] = value
    return classes


class TypeRegistry:
    """The classes, routing functions and routing factories a saved pipeline may name, by ``(module, name)``."""

    def __init__(self, entry_point_group: str = ENTRY_POINT_GROUP) -> None:
        self.entry_point_group = entry_point_group
        # Each lock is held only for its own work: loading an entry point imports a module whose `@register`
        # decorators come back to `register`, possibly from another thread's import.
        self._lock = threading.Lock()
        self._project_lock = threading.Lock()
        self._entry_points_lock = threading.RLock()
        self._project: Optional[Dict[TypeKey, type]] = None
        self._classes: Dict[TypeKey, type] = {}
        self._routing_functions: Dict[TypeKey, Any] = {}
        self._entry_points_loaded = False
        self.entry_point_errors: List[str] = []

    # -- registering -------------------------------------------------------------------------------------------

    def register(self, obj: _Registered) -> _Registered:
        """Lets saved pipelines name ``obj``: a pydantic model class (a step, task, LLM or a model nested in
        one), or a routing function (plain, or made by ``@routing_batch_function``). Returns ``obj``."""
        if isinstance(obj, type):
            if not issubclass(obj, BaseModel):
                raise TypeError(
                    f"register() takes a pydantic model class (a step, task or LLM) or a routing function;"
                    f" {obj.__qualname__} is not a pydantic model."
                )
            with self._lock:
                self._classes[_key(obj)] = obj
            return obj
        function = obj.fn if isinstance(obj, RoutingBatchFunction) else obj
        if not callable(function) or not getattr(function, "__module__", None) or not getattr(
            function, "__qualname__", None
        ):
            raise TypeError(
                f"register() takes a pydantic model class or a routing function with a module and a qualified"
                f" name, got {obj!r}."
            )
        with self._lock:
            self._routing_functions[_key(function)] = obj
        return obj

    # -- looking up --------------------------------------------------------------------------------------------

    def model_class(self, module: str, name: str) -> Optional[type]:
        """The registered pydantic model class named ``module``/``name``, or ``None``. Imports nothing named."""

        def find() -> Optional[type]:
            key = (module, name)
            return self._project_classes().get(key) or self._classes.get(key)

        return self._lookup(find)

    def routing_function(self, module: str, name: str) -> Optional[Any]:
        """The registered routing function (plain or ``RoutingBatchFunction``) named ``module``/``name``."""
        return self._lookup(lambda: self._routing_functions.get((module, name)))

    def routing_factory(self, module: str, name: str) -> Optional[Callable[..., RoutingBatchFunction]]:
        """The project's routing factory named ``module``/``name`` (``sample_n_steps``), or ``None``."""
        return _ROUTING_FACTORIES.get((module, name))

    def names_in(self, module: str, kind: str) -> List[str]:
        """The registered names of ``kind`` (``"class"``, ``"routing function"`` or ``"routing factory"``) from
        ``module``, for a "did you mean" hint; empty for a module nothing of that kind is registered from."""
        keys: List[TypeKey]
        if kind == "class":
            with self._lock:
                keys = [*self._classes]
            keys += self._project_classes()
        elif kind == "routing function":
            with self._lock:
                keys = [*self._routing_functions]
        else:
            keys = [*_ROUTING_FACTORIES]
        return sorted({name for key_module, name in keys if key_module == module})

    def _project_classes(self) -> Dict[TypeKey, type]:
        with self._project_lock:
            if self._project is None:
                self._project = _project_classes()
            return self._project

    def _lookup(self, find: Callable[[], Any]) -> Any:
        found = find()
        if found is None:
            # A miss waits for a load in progress on another thread; reentrant for a plugin that loads a pipeline.
            with self._entry_points_lock:
                if not self._entry_points_loaded:
                    self._entry_points_loaded = True
                    self._load_entry_points()
                found = find()
        return found

    def _load_entry_points(self) -> None:
        """Imports what the installed distributions declare in the entry-point group (once per process)."""
        for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
            try:
                loaded = entry_point.load()
                if not isinstance(loaded, types.ModuleType):
                    self.register(loaded)
            except Exception as error:  # a broken plugin must not hide the others; its error is reported on a miss
                self.entry_point_errors.append(
                    f"entry point {entry_point.name!r} = {entry_point.value!r} failed: {type(error).__name__}: {error}"
                )


# The process's registry: what `register` adds to and what `Pipeline.from_file` looks names up in.
REGISTRY = TypeRegistry()


def register(obj: _Registered) -> _Registered:
    """Lets saved pipelines name ``obj`` (a step, task or LLM class, or a routing function); usable as a
    decorator (``@register``) or called (``register(MyStep)``). Returns ``obj`` unchanged."""
    return REGISTRY.register(obj)


__all__ = ["ENTRY_POINT_GROUP", "HOW_TO_REGISTER", "REGISTRY", "TypeRegistry", "register"]
