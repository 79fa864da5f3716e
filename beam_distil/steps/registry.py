"""What a saved pipeline or a step's ``dump()`` may name: the step, task, LLM and embedding classes and the routing
functions that loading will build, looked up by their ``type_info: {module, name}``.

A pipeline file is untrusted input (it may come from a URL or a colleague). Loading one never imports a module
named in the file and never calls anything the file names unless it is registered here:

* beam_distil's own classes: every step, task, LLM and embedding class (abstract ones too) of the modules under
  ``beam_distil.steps`` and ``beam_distil.models``, by the module that defines it
  (``beam_distil.steps.tasks.text_generation.TextGeneration``) and by any of those modules that imports it (the
  public packages of a hand-written file, ``beam_distil.steps.tasks.TextGeneration``);
* the same classes by distilabel's names: any ``distilabel.*`` module with the name of a class beam_distil ports
  (``distilabel.steps.tasks.text_generation.TextGeneration``, what ``dump`` writes and what distilabel 1.5.3
  writes) is beam_distil's class of that name (``beam_distil.steps.distilabel_names``);
* your classes and routing functions, registered by your code with ``register``
  (``from beam_distil.pipeline import register``), in a module that is imported before the pipeline is loaded, or
  named by an entry point of the ``beam_distil.registry`` group in the distribution that ships them. The entry
  points are loaded once per process, the first time a lookup misses: they name code that is installed, never
  code named by the file.

The registry lives here, below ``beam_distil.pipeline``, so that ``Step.from_dict`` finds classes through it too;
``beam_distil.pipeline.registry`` is its public face (``register``, ``REGISTRY``) and adds the routing factories.

Example::

    REGISTRY.model_class("distilabel.models.llms.openai", "OpenAILLM")    # beam_distil.models.OpenAILLM
    REGISTRY.model_class("os", "system")                                  # None: not registered, nothing imported
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import threading
import types
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from pydantic import BaseModel

from beam_distil.runtime_parameters import RuntimeParametersMixin
from beam_distil.steps.distilabel_names import DISTILABEL_MODULES, is_distilabel_module

ENTRY_POINT_GROUP = "beam_distil.registry"

TypeKey = Tuple[str, str]
_Registered = TypeVar("_Registered")

# The packages whose modules are walked for the project's own classes. Fixed here: a lookup never adds to it.
_PROJECT_PACKAGES = ("beam_distil.steps", "beam_distil.models")

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


def _is_component(value: Any) -> bool:
    """Whether ``value`` is a class a file may build: a step, task or LLM (all have runtime parameters) or an
    embedding model. Steps are recognised by their runtime parameters rather than by ``_Step`` itself, because
    ``beam_distil.steps.base`` loads dicts through this module."""
    from beam_distil.models.embeddings.base import Embeddings

    return (
        isinstance(value, type)
        and issubclass(value, BaseModel)
        and issubclass(value, (RuntimeParametersMixin, Embeddings))
        and value.__module__.startswith("beam_distil.")
    )


def _project_classes() -> Dict[TypeKey, type]:
    classes: Dict[TypeKey, type] = {}
    for module in _project_modules():
        for name, value in vars(module).items():
            if _is_component(value):
                # The defining module's name (old saved files) and the importing one's (hand-written files).
                classes[_key(value)] = value
                classes[(module.__name__, name)] = value
    return classes


class TypeRegistry:
    """The classes and routing functions a saved pipeline may name, by ``(module, name)``. (The routing
    factories, the only callables a file may call with arguments, are a fixed table: ``beam_distil.pipeline.routing``.)"""

    def __init__(self, entry_point_group: str = ENTRY_POINT_GROUP) -> None:
        self.entry_point_group = entry_point_group
        # Each lock is held only for its own work: loading an entry point imports a module whose `@register`
        # decorators come back to `register`, possibly from another thread's import.
        self._lock = threading.Lock()
        self._project_lock = threading.Lock()
        self._entry_points_lock = threading.RLock()
        self._project: Optional[Dict[TypeKey, type]] = None
        self._project_by_name: Dict[str, type] = {}
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
        # A RoutingBatchFunction (beam_distil.pipeline.routing) is saved under the name of the function it wraps,
        # which it keeps in `fn`.
        function = getattr(obj, "fn", obj)
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
        """The registered pydantic model class named ``module``/``name``, or ``None``. Imports nothing named.

        A ``distilabel.*`` module stands for beam_distil's own class of that name, wherever distilabel defines it.
        """
        if is_distilabel_module(module):
            self._project_classes()
            return self._project_by_name.get(name)

        def find() -> Optional[type]:
            key = (module, name)
            return self._project_classes().get(key) or self._classes.get(key)

        return self._lookup(find)

    def routing_function(self, module: str, name: str) -> Optional[Any]:
        """The registered routing function (plain or ``RoutingBatchFunction``) named ``module``/``name``."""
        return self._lookup(lambda: self._routing_functions.get((module, name)))

    def names_in(self, module: str, kind: str) -> List[str]:
        """The registered names of ``kind`` (``"class"`` or ``"routing function"``) from ``module``, for a "did
        you mean" hint; empty for a module nothing of that kind is registered from."""
        if kind == "class" and is_distilabel_module(module):
            self._project_classes()
            return sorted(
                name
                for name in self._project_by_name
                if name in DISTILABEL_MODULES
                and (DISTILABEL_MODULES[name] == module or DISTILABEL_MODULES[name].startswith(f"{module}."))
            )
        keys: List[TypeKey]
        if kind == "class":
            with self._lock:
                keys = [*self._classes]
            keys += self._project_classes()
        else:
            with self._lock:
                keys = [*self._routing_functions]
        return sorted({name for key_module, name in keys if key_module == module})

    def _project_classes(self) -> Dict[TypeKey, type]:
        with self._project_lock:
            if self._project is None:
                self._project = _project_classes()
                self._project_by_name = {cls.__name__: cls for cls in self._project.values()}
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


# The process's registry: what `register` adds to, what `Pipeline.from_file` and `Step.from_dict` look names up in.
REGISTRY = TypeRegistry()


__all__ = ["ENTRY_POINT_GROUP", "HOW_TO_REGISTER", "REGISTRY", "TypeRegistry"]
