"""A saved pipeline is untrusted input: loading one imports and calls nothing outside the registry of what a file
may name (beam_distil's own classes, what user code registers, what installed entry points declare), and YAML
that would expand without bound (alias bombs) or is too large is refused before it is loaded.

Every test writes real files and loads them with ``Pipeline.from_file`` or ``beam-distil pipeline info``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import textwrap
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import yaml

import beam_distil.pipeline.registry as registry
import beam_distil.pipeline.serialization as serialization
from beam_distil.cli import main
from beam_distil.helpers import to_text
from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, sample_n_steps
from beam_distil.pipeline.serialization import PipelineSerializationError
from beam_distil.steps import KeepColumns, LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

REPO_ROOT = Path(__file__).resolve().parents[2]
WHAT_TO_DO = "register it with `@register`"


def saved_config(tmp_path: Path, routed: bool = False, rows: Any = None) -> Dict[str, Any]:
    """A small pipeline as ``dump()`` gives it: load -> [routing] -> gen_a, gen_b -> keep."""
    with Pipeline("small") as pipeline:
        load = LoadDataFromDicts(name="load", data=rows or [{"instruction": "x"}])
        tasks = [TextGeneration(name=f"gen_{m}", llm=OpenAILLM(model=f"model-{m}")) for m in "ab"]
        keep = KeepColumns(name="keep", columns=["instruction"])
        if routed:
            load >> sample_n_steps(1) >> tasks >> keep
        else:
            load >> tasks >> keep
    return pipeline.dump()


def write(tmp_path: Path, data: Dict[str, Any], name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def step_entry(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    return next(entry["step"] for entry in data["pipeline"]["steps"] if entry["name"] == name)


def write_module(directory: Path, source: str, prefix: str) -> str:
    """Writes ``source`` as a module with a name of its own (tests share one process) and returns the name."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


@pytest.fixture
def on_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` on ``sys.path``, and any module imported from it forgotten after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if str(tmp_path) in (getattr(sys.modules[name], "__file__", None) or ""):
            del sys.modules[name]


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> registry.TypeRegistry:
    """A registry of this process that has not loaded its entry points yet (they load once per process)."""
    fresh = registry.TypeRegistry()
    monkeypatch.setattr(registry, "REGISTRY", fresh)
    return fresh


# -- routing: a file names a callable and arguments -------------------------------------------------------------


COMMAND_TARGETS = [("os", "system"), ("subprocess", "getoutput")]


def command_routing_config(tmp_path: Path, module: str, name: str, marker: Path) -> Path:
    data = saved_config(tmp_path, routed=True)
    routing = data["pipeline"]["routing_batch_functions"][0]
    # distilabel's layout: a factory's arguments are in its `type_info`.
    routing["type_info"] = {"module": module, "name": name, "kwargs": {"command" if name == "system" else "cmd": f"touch {marker}"}}
    return write(tmp_path, data)


@pytest.mark.parametrize("module, name", COMMAND_TARGETS)
def test_a_routing_target_naming_a_shell_command_runs_nothing(tmp_path, module, name):
    marker = tmp_path / "ran"
    path = command_routing_config(tmp_path, module, name, marker)

    with pytest.raises(PipelineSerializationError) as raised:
        Pipeline.from_file(path)

    assert not marker.exists()
    message = str(raised.value)
    assert f"{{'module': '{module}', 'name': '{name}', 'kwargs': " in message
    assert "names a routing factory that is not registered" in message
    assert f"file '{path}'" in message and "step 'load'" in message
    assert "Only beam_distil's routing factories (sample_n_steps) are called with `kwargs`" in message
    assert WHAT_TO_DO in message and "entry point in the `beam_distil.registry` group" in message


@pytest.mark.parametrize("module, name", COMMAND_TARGETS)
def test_pipeline_info_refuses_the_shell_command_routing_with_exit_code_2(tmp_path, capsys, module, name):
    marker = tmp_path / "ran"
    path = command_routing_config(tmp_path, module, name, marker)

    code = main(["pipeline", "info", "--config", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert not marker.exists()
    assert err.startswith("beam-distil: error: Routing function: type_info")
    assert "Traceback" not in err and str(path) in err and WHAT_TO_DO in err


def test_a_routing_function_without_kwargs_must_be_registered(tmp_path):
    data = saved_config(tmp_path, routed=True)
    routing = data["pipeline"]["routing_batch_functions"][0]
    routing["type_info"] = {"module": "os", "name": "system"}  # no `kwargs`: a function, not a factory
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError, match=r"names a routing function that is not registered") as raised:
        Pipeline.from_file(path)

    assert "step 'load'" in str(raised.value) and str(path) in str(raised.value)


def test_kwargs_call_only_the_projects_routing_factories(tmp_path, on_sys_path):
    marker = tmp_path / "called"
    name = write_module(
        on_sys_path,
        f"""
        from beam_distil.pipeline import register

        @register
        def pick(steps=None, **kwargs):
            open({str(marker)!r}, "w").close()
            return steps[:1]
        """,
        "user_routing",
    )
    importlib.import_module(name)
    data = saved_config(tmp_path, routed=True)
    routing = data["pipeline"]["routing_batch_functions"][0]
    routing["type_info"] = {"module": name, "name": "pick", "kwargs": routing["type_info"]["kwargs"]}
    path = write(tmp_path, data)

    # A registered routing function is called with the downstream steps when batches are routed, never with
    # arguments chosen by the file.
    with pytest.raises(PipelineSerializationError, match="names a routing factory that is not registered"):
        Pipeline.from_file(path)

    assert not marker.exists()


# -- classes: a file names a module to import ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["step", "llm"])
def test_a_type_info_naming_an_unregistered_module_is_refused_without_importing_it(tmp_path, on_sys_path, where):
    marker = tmp_path / "imported"
    module = write_module(on_sys_path, f"open({str(marker)!r}, 'w').close()\nclass Evil: ...\n", "evil_plugin")
    data = saved_config(tmp_path)
    target = step_entry(data, "gen_a")
    (target if where == "step" else target["llm"])["type_info"] = {"module": module, "name": "Evil"}
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError) as raised:
        Pipeline.from_file(path)

    assert not marker.exists()
    assert module not in sys.modules
    message = str(raised.value)
    assert f"type_info {{'module': '{module}', 'name': 'Evil'}} names a class that is not registered" in message
    assert f"(file '{path}', step 'gen_a')" in message
    assert "nothing it names is imported" in message and WHAT_TO_DO in message


def test_a_config_cannot_run_the_packages_own_command_line(tmp_path, monkeypatch):
    # Even inside beam_distil: importing beam_distil.__main__ would run the command line.
    monkeypatch.delitem(sys.modules, "beam_distil.__main__", raising=False)
    data = saved_config(tmp_path)
    step_entry(data, "keep")["type_info"] = {"module": "beam_distil.__main__", "name": "main"}
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError, match=r"'beam_distil\.__main__'.*not registered.*step 'keep'"):
        Pipeline.from_file(path)

    assert "beam_distil.__main__" not in sys.modules


def test_an_imported_but_unregistered_user_step_names_the_step_the_file_and_what_to_do(tmp_path, on_sys_path):
    module = write_module(
        on_sys_path,
        """
        from beam_distil.steps import KeepColumns

        class MyKeep(KeepColumns):
            pass
        """,
        "user_unregistered",
    )
    importlib.import_module(module)  # importing is not registering
    data = saved_config(tmp_path)
    step_entry(data, "keep")["type_info"] = {"module": module, "name": "MyKeep"}
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError) as raised:
        Pipeline.from_file(path)

    message = str(raised.value)
    assert f"(file '{path}', step 'keep')" in message
    assert f"if `{module}.MyKeep` is yours, {WHAT_TO_DO} (`from beam_distil.pipeline import register`)" in message
    assert "or declare an entry point in the `beam_distil.registry` group of the package that defines it" in message


def test_a_misspelt_project_class_is_named_with_a_hint(tmp_path):
    data = saved_config(tmp_path)
    step_entry(data, "gen_a")["type_info"]["name"] = "TextGenration"
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError) as raised:
        Pipeline.from_file(path)

    assert "has no 'TextGenration' that a pipeline file may name" in str(raised.value)
    assert "Did you mean 'TextGeneration'" in str(raised.value)


def test_a_registered_llm_named_as_a_step_is_refused_before_it_is_built(tmp_path):
    data = saved_config(tmp_path)
    step_entry(data, "keep")["type_info"] = {"module": "beam_distil.models.openai", "name": "OpenAILLM"}
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError, match=r"OpenAILLM is not a step \(file .*, step 'keep'\)"):
        Pipeline.from_file(path)


USER_MODULE = """
    from typing import Any, List

    from beam_distil.models import OpenAILLM
    from beam_distil.pipeline import register, routing_batch_function
    from beam_distil.steps import Step, StepInput, StepOutput


    @register
    class Shout(Step):
        suffix: str = "!"

        @property
        def inputs(self) -> List[str]:
            return ["instruction"]

        @property
        def outputs(self) -> List[str]:
            return ["shout"]

        def process(self, inputs: StepInput) -> StepOutput:
            yield [{**row, "shout": row["instruction"].upper() + self.suffix} for row in inputs]


    @register
    class HouseLLM(OpenAILLM):
        house: str = "north"


    @register
    @routing_batch_function(description="the first one", seed=3)
    def first_only(steps: List[str]) -> List[str]:
        return steps[:1]


    def unregistered(steps: List[str]) -> List[str]:
        return steps
"""


def test_registered_user_classes_and_routing_function_round_trip(tmp_path, on_sys_path):
    user = importlib.import_module(write_module(on_sys_path, USER_MODULE, "user_steps"))
    with Pipeline("mine") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "hi"}])
        shout = user.Shout(name="shout", suffix="!!")
        gens = [TextGeneration(name=f"gen_{m}", llm=user.HouseLLM(model=m, house="south")) for m in "ab"]
        load >> shout >> user.first_only >> gens
    path = tmp_path / "mine.yaml"
    pipeline.save(path)

    loaded = Pipeline.from_file(path)

    assert loaded.dump() == pipeline.dump()
    assert type(loaded.dag.steps["shout"]) is user.Shout and loaded.dag.steps["shout"].suffix == "!!"
    assert type(loaded.dag.steps["gen_a"].llm) is user.HouseLLM and loaded.dag.steps["gen_a"].llm.house == "south"
    routing = loaded.routing["shout"]
    assert routing.fn is user.first_only.fn and routing.seed == 3 and routing.description == "the first one"
    assert routing.choose(["gen_a", "gen_b"], "shout", 0) == ["gen_a"]

    user_data = yaml.safe_load(path.read_text())
    user_data["pipeline"]["routing_batch_functions"][0]["type_info"]["name"] = "unregistered"
    with pytest.raises(PipelineSerializationError, match=r"has no 'unregistered' that a pipeline file may name"):
        Pipeline.from_dict(user_data)


def entry_point_distribution(directory: Path, entry_points: str) -> None:
    """An installed distribution as ``pip`` leaves it: a ``.dist-info`` folder with its entry points."""
    dist_info = directory / f"beam_distil_plugin_{uuid.uuid4().hex[:8]}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_info.name.split('-')[0]}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{entry_points}")


def test_classes_declared_by_an_entry_point_load_without_importing_them_first(
    tmp_path, on_sys_path, fresh_registry, monkeypatch
):
    steps_module = write_module(
        on_sys_path,
        """
        from beam_distil.pipeline import register
        from beam_distil.steps import KeepColumns

        @register
        class PluginKeep(KeepColumns):
            pass
        """,
        "plugin_steps",
    )
    llm_module = write_module(
        on_sys_path,
        """
        from beam_distil.models import OpenAILLM

        class PluginLLM(OpenAILLM):  # not decorated: the entry point names it
            pass
        """,
        "plugin_llm",
    )
    entry_point_distribution(on_sys_path, f"steps = {steps_module}\nllm = {llm_module}:PluginLLM\n")
    data = saved_config(tmp_path)
    step_entry(data, "keep")["type_info"] = {"module": steps_module, "name": "PluginKeep"}
    step_entry(data, "gen_b")["llm"]["type_info"] = {"module": llm_module, "name": "PluginLLM"}
    path = write(tmp_path, data)
    scans: List[Dict[str, Any]] = []
    real_entry_points: Callable[..., Any] = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: scans.append(kw) or real_entry_points(**kw))
    assert steps_module not in sys.modules and llm_module not in sys.modules

    loaded = Pipeline.from_file(path)

    assert type(loaded.dag.steps["keep"]).__qualname__ == "PluginKeep"
    assert type(loaded.dag.steps["keep"]).__module__ == steps_module
    assert type(loaded.dag.steps["gen_b"].llm) is sys.modules[llm_module].PluginLLM
    # Loaded once per process: a later miss does not scan the installed distributions again.
    step_entry(data, "keep")["type_info"]["name"] = "Missing"
    with pytest.raises(PipelineSerializationError, match="has no 'Missing'"):
        Pipeline.from_dict(data)
    group = {"group": "beam_distil.registry"}
    assert [scan for scan in scans if scan == group] == [group]
    assert fresh_registry.entry_point_errors == []


def test_a_broken_entry_point_is_named_when_a_lookup_misses(tmp_path, on_sys_path, fresh_registry):
    missing = f"plugin_missing_{uuid.uuid4().hex[:8]}"
    entry_point_distribution(on_sys_path, f"broken = {missing}\n")
    data = saved_config(tmp_path)
    step_entry(data, "keep")["type_info"] = {"module": "somewhere", "name": "Else"}
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError) as raised:
        Pipeline.from_file(path)

    assert f"The entry point 'broken' = '{missing}' failed: ModuleNotFoundError" in str(raised.value)


# -- YAML: alias bombs and size ----------------------------------------------------------------------------------


def billion_laughs(flow: bool) -> str:
    """10 levels of 10 aliases each: under 2 KB that expand to 10**9 strings."""
    levels = [(f"lol{level}", ", ".join([f"*lol{level - 1}"] * 10)) for level in range(1, 10)]
    if flow:  # JSON-like flow style, no space after the colon: libyaml takes an anchor right after `:`
        pairs = ['"lol0":&lol0 "lol"'] + [f'"{name}":&{name} [{items}]' for name, items in levels]
        laughs = "laughs: {" + ",".join(pairs) + "}"
    else:
        laughs = "\n".join(['lol0: &lol0 "lol"'] + [f"{name}: &{name} [{items}]" for name, items in levels])
    step = (
        "{name: load, step: {name: load, data: [{x: *lol9}],"
        " type_info: {module: beam_distil.steps.generators.data, name: LoadDataFromDicts}}}"
    )
    return f"{laughs}\npipeline: {{name: bomb, steps: [{step}]}}\n"


@pytest.mark.parametrize("flow", [False, True], ids=["block", "flow"])
def test_an_alias_bomb_is_refused_at_once_and_in_little_memory(tmp_path, flow):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(flow))
    assert path.stat().st_size < 4096

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PipelineSerializationError) as raised:
            Pipeline.from_file(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert elapsed < 0.5
    assert peak < 16 * 1024 * 1024
    message = str(raised.value)
    assert f"YAML in '{path}' looks like an alias bomb" in message
    assert "expand to more than 1,000,000 nodes" in message and "without anchors (&name) and aliases" in message


def test_pipeline_info_refuses_an_alias_bomb_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(flow=False))

    assert main(["pipeline", "info", "--config", str(path)]) == 2

    err = capsys.readouterr().err
    assert "looks like an alias bomb" in err and "Traceback" not in err


def test_a_yaml_with_a_few_anchors_still_loads(tmp_path):
    data = saved_config(tmp_path)
    shared = {"temperature": 0.3, "max_new_tokens": 11}
    for name in ("gen_a", "gen_b"):
        step_entry(data, name)["llm"]["generation_kwargs"] = shared  # the same object: written as &id001 / *id001
    path = tmp_path / "anchored.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert "&id001" in path.read_text() and "*id001" in path.read_text()

    loaded = Pipeline.from_file(path)

    assert loaded.dag.steps["gen_a"].llm.generation_kwargs == shared
    assert loaded.dag.steps["gen_b"].llm.generation_kwargs == shared


def test_a_node_that_contains_itself_is_refused(tmp_path):
    path = tmp_path / "recursive.yaml"
    path.write_text(
        "pipeline:\n  name: loop\n  steps:\n  - name: load\n    step:\n      name: load\n"
        "      data: &rows [{x: 1}, *rows]\n"
        "      type_info: {module: beam_distil.steps.generators.data, name: LoadDataFromDicts}\n"
    )

    with pytest.raises(PipelineSerializationError, match=r"alias \*rows is inside the node &rows it names"):
        Pipeline.from_file(path)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_over_the_size_limit_is_refused(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"pipeline{suffix}"
    Pipeline.from_dict(saved_config(tmp_path)).save(path)
    monkeypatch.setattr(serialization, "MAX_CONFIG_BYTES", 1000)
    assert path.stat().st_size > 1000

    with pytest.raises(PipelineSerializationError) as raised:
        Pipeline.from_file(path)

    message = str(raised.value)
    assert f"Pipeline file '{path}' is larger than the limit of 1,000 bytes" in message
    assert "MAX_CONFIG_BYTES" in message and "LoadDataFromFileSystem" in message
    with pytest.raises(PipelineSerializationError, match="larger than the limit of 1,000 bytes"):
        serialization.parse_text("x" * 1001, "yaml", source="inline")


def test_the_yaml_writer_never_writes_anchors(tmp_path):
    shared = {"temperature": 0.3}
    text = to_text({"a": shared, "b": shared, "c": [shared]}, "yaml")

    assert "&" not in text and "*" not in text
    assert yaml.safe_load(text) == {"a": shared, "b": shared, "c": [shared]}


@pytest.mark.parametrize(
    "suffix, text",
    [
        (".yaml", "pipeline: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        (".yaml", "pipeline:\n  steps:\n" + "  " + "- " * 100_000 + "x\n"),
        (".json", '{"pipeline": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ],
    ids=["flow", "block", "json"],
)
def test_deep_nesting_is_refused_instead_of_crashing_the_process(tmp_path, suffix, text):
    """libyaml's C loader recurses without a limit: 100,000 nested lists would end the process (SIGSEGV), so
    the check runs in a child process, through the command line, as a user would meet it."""
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)

    result = subprocess.run(
        [sys.executable, "-m", "beam_distil", "pipeline", "info", "--config", str(path)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )

    assert result.returncode == 2, result.stderr[-2000:]
    assert f"nests lists or mappings more than {serialization.MAX_NESTING_DEPTH} levels deep" in result.stderr


def test_ordinary_nesting_still_loads(tmp_path):
    path = tmp_path / "nested.yaml"
    rows = [{"instruction": "q", "tags": [[["a"]], {"b": [1, 2]}]}]
    Pipeline.from_dict(saved_config(tmp_path, rows=rows)).save(path)

    loaded = Pipeline.from_file(path)

    assert loaded.dag.steps["load"].data == rows


@pytest.mark.parametrize("llm_class", ["TransformersLLM", "vLLM"])
def test_a_config_cannot_switch_on_a_models_remote_code(tmp_path, llm_class):
    from beam_distil.models import TransformersLLM, vLLM

    cls = {"TransformersLLM": TransformersLLM, "vLLM": vLLM}[llm_class]
    with Pipeline("remote-code") as pipeline:
        LoadDataFromDicts(name="load", data=[{"instruction": "x"}]) >> TextGeneration(
            name="gen", llm=cls(model="org/model")
        )
    data = pipeline.dump()
    step_entry(data, "gen")["llm"]["trust_remote_code"] = True
    path = write(tmp_path, data)

    with pytest.raises(PipelineSerializationError) as raised:
        Pipeline.from_file(path)

    message = str(raised.value)
    assert f"{llm_class} (file '{path}', step 'gen'): a config may not set ['trust_remote_code'] to true" in message
    assert "for a repository you trust" in message
    step_entry(data, "gen")["llm"]["trust_remote_code"] = False
    assert Pipeline.from_file(write(tmp_path, data, "ok.yaml")).dag.steps["gen"].llm.trust_remote_code is False
