"""Column steps: ``process`` behaviour (as distilabel's) and runs on Beam, native and through ``Pipeline``."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError

from beam_distil.pipeline import Pipeline
from beam_distil.steps import GeneratorStep, Step, StepInput
from beam_distil.steps.columns import (
    CombineOutputs,
    ExpandColumns,
    GroupColumns,
    KeepColumns,
    MergeColumns,
    merge_columns,
    merge_distilabel_metadata,
)


class Rows(GeneratorStep):
    """Yields ``rows`` in batches of ``batch_size``."""

    rows: List[Dict[str, Any]]

    @property
    def outputs(self) -> List[str]:
        return list(self.rows[0])

    def process(self, offset: int = 0):
        for start in range(offset, len(self.rows), self.batch_size):
            yield [dict(row) for row in self.rows[start : start + self.batch_size]], start + self.batch_size >= len(
                self.rows
            )


class Tag(Step):
    """Adds ``generation`` = ``<instruction>-<tag>`` and some metadata."""

    tag: str

    @property
    def inputs(self) -> List[str]:
        return ["instruction"]

    @property
    def outputs(self) -> List[str]:
        return ["generation", "model_name"]

    def process(self, inputs: StepInput):
        yield [
            {
                **row,
                "generation": f"{row['instruction']}-{self.tag}",
                "model_name": self.tag,
                "distilabel_metadata": {f"stats_{self.tag}": 1},
            }
            for row in inputs
        ]


def _run_native(step: Step, rows: List[Dict[str, Any]], expected: List[Dict[str, Any]]) -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(rows) | "x" >> step
        assert_that(out, equal_to(expected))


# -- merge_distilabel_metadata ----------------------------------------------------------------------------


def test_merge_distilabel_metadata_dicts() -> None:
    merged = merge_distilabel_metadata(
        {"distilabel_metadata": {"a": 1, "b": 2}}, {"x": 0}, {"distilabel_metadata": {"a": 3}}
    )
    assert merged == {"a": [1, 3], "b": 2}


def test_merge_distilabel_metadata_lists() -> None:
    merged = merge_distilabel_metadata({"distilabel_metadata": [{"a": 1}]}, {"distilabel_metadata": [{"a": 2}]})
    assert merged == [{"a": 1}, {"a": 2}]


# -- GroupColumns -----------------------------------------------------------------------------------------


def test_group_columns_process_default_names_and_metadata() -> None:
    step = GroupColumns(columns=["generation", "model_name"])
    assert step.inputs == ["generation", "model_name"]
    assert step.outputs == ["grouped_generation", "grouped_model_name"]
    result = next(
        step.process(
            [{"instruction": "i", "generation": "g1", "model_name": "m1", "distilabel_metadata": {"s": 1}}],
            [{"instruction": "i", "generation": "g2", "model_name": "m2", "distilabel_metadata": {"s": 2, "t": 0}}],
        )
    )
    assert result == [
        {
            "instruction": "i",
            "grouped_generation": ["g1", "g2"],
            "grouped_model_name": ["m1", "m2"],
            "distilabel_metadata": {"s": [1, 2], "t": 0},
        }
    ]


def test_group_columns_output_columns_and_validation_columns() -> None:
    step = GroupColumns(columns=["generation"], output_columns=["generations"])
    assert step.outputs == ["generations"]
    assert step.output_columns == ["generations"]
    result = next(step.process([{"generation": "a"}, {"generation": "b"}], [{"generation": "c"}, {"generation": "d"}]))
    assert result == [{"generations": ["a", "c"]}, {"generations": ["b", "d"]}]
    assert "distilabel_metadata" not in result[0]
    assert step.columns_after(["instruction", "generation"]) == ["instruction", "generations"]


def test_group_columns_length_mismatch_is_validation_error() -> None:
    with pytest.raises(ValidationError, match="same length"):
        GroupColumns(columns=["a", "b"], output_columns=["x"])


def test_group_columns_beam_native() -> None:
    _run_native(
        GroupColumns(columns=["g"]),
        [{"i": 1, "g": "a"}, {"i": 2, "g": "b"}],
        [{"i": 1, "grouped_g": ["a"]}, {"i": 2, "grouped_g": ["b"]}],
    )


# -- MergeColumns -----------------------------------------------------------------------------------------


def test_merge_columns_process() -> None:
    step = MergeColumns(columns=["queries", "multiple_queries"], output_column="queries")
    row = {"queries": "How are you?", "multiple_queries": ["What's up?", "All ok?"], "id": 1}
    assert next(step.process([row])) == [{"id": 1, "queries": ["How are you?", "What's up?", "All ok?"]}]
    assert row["multiple_queries"] == ["What's up?", "All ok?"]  # input not mutated
    assert step.columns_after(["queries", "multiple_queries", "id"]) == ["id", "queries"]


def test_merge_columns_default_output_and_missing_column() -> None:
    step = MergeColumns(columns=["a", "b"])
    assert step.outputs == ["merged_column"]
    assert next(step.process([{"a": 1, "b": [2, 3]}])) == [{"merged_column": [1, 2, 3]}]
    with pytest.raises(KeyError):
        merge_columns({"a": 1}, ["a", "b"])


def test_merge_columns_beam_native() -> None:
    _run_native(MergeColumns(columns=["a", "b"], output_column="ab"), [{"a": 1, "b": 2}], [{"ab": [1, 2]}])


# -- KeepColumns ------------------------------------------------------------------------------------------


def test_keep_columns_process_order_and_output_columns() -> None:
    step = KeepColumns(columns=["generation", "instruction"])
    result = next(step.process([{"instruction": "i", "generation": "g", "model_name": "m"}]))
    assert result == [{"generation": "g", "instruction": "i"}]
    assert list(result[0]) == ["generation", "instruction"]
    assert step.columns_after(["instruction", "generation", "model_name"]) == ["generation", "instruction"]
    assert step.inputs == step.outputs == ["generation", "instruction"]


def test_keep_columns_beam_native() -> None:
    _run_native(
        KeepColumns(columns=["a"]),
        [{"a": 1, "b": 2}, {"a": 3, "c": 4}],
        [{"a": 1}, {"a": 3}],
    )


# -- ExpandColumns ----------------------------------------------------------------------------------------


def test_expand_columns_process() -> None:
    step = ExpandColumns(columns=["generation"])
    assert step.columns == {"generation": "generation"}
    result = next(step.process([{"instruction": "i1", "generation": ["g1", "g2"]}, {"instruction": "i2", "generation": ["g3"]}]))
    assert result == [
        {"instruction": "i1", "generation": "g1"},
        {"instruction": "i1", "generation": "g2"},
        {"instruction": "i2", "generation": "g3"},
    ]


def test_expand_columns_rename_and_several_columns() -> None:
    step = ExpandColumns(columns={"gens": "gen", "models": "model"})
    assert step.inputs == ["gens", "models"]
    assert step.outputs == ["gen", "model"]
    result = next(step.process([{"gens": ["a", "b"], "models": ["m1", "m2"]}]))
    assert result == [
        {"gens": ["a", "b"], "models": ["m1", "m2"], "gen": "a", "model": "m1"},
        {"gens": ["a", "b"], "models": ["m1", "m2"], "gen": "b", "model": "m2"},
    ]


def test_expand_columns_encoded() -> None:
    step = ExpandColumns(columns=["g", "h"], encoded=["g"])
    row = {"g": json.dumps([1, 2]), "h": [3, 4]}
    assert next(step.process([row])) == [{"g": 1, "h": 3}, {"g": 2, "h": 4}]
    assert row["g"] == "[1, 2]"  # input not mutated
    assert ExpandColumns(columns=["g"], encoded=True).encoded_columns == ["g"]
    with pytest.raises(ValidationError, match="not present in the columns"):
        ExpandColumns(columns=["g"], encoded=["nope"])


def test_expand_columns_beam_native() -> None:
    _run_native(
        ExpandColumns(columns=["g"], input_batch_size=2),
        [{"i": 0, "g": ["a", "b", "c"]}, {"i": 1, "g": ["d"]}, {"i": 2, "g": ["e", "f"]}],
        [
            {"i": 0, "g": "a"},
            {"i": 0, "g": "b"},
            {"i": 0, "g": "c"},
            {"i": 1, "g": "d"},
            {"i": 2, "g": "e"},
            {"i": 2, "g": "f"},
        ],
    )



def test_expand_columns_split_statistics_as_distilabel() -> None:
    # distilabel's documented example: one answer holding two instructions, 12 tokens each way.
    row = {
        "instruction": "instruction 1",
        "generation": ["generation 1", "generation 2"],
        "distilabel_metadata": {
            "statistics_generation": {"input_tokens": [12], "output_tokens": [12]},
            "raw_output_generation": "raw",
        },
    }
    step = ExpandColumns(columns=["generation"], split_statistics=True)
    result = next(step.process([row]))
    assert [r["generation"] for r in result] == ["generation 1", "generation 2"]
    for expanded in result:
        assert expanded["distilabel_metadata"] == {
            "statistics_generation": {"input_tokens": [6], "output_tokens": [6]},
            "raw_output_generation": "raw",
        }
    assert row["distilabel_metadata"]["statistics_generation"]["input_tokens"] == [12]  # input not mutated
    # Without split_statistics each new row repeats the counts; numbers become one-item lists; no metadata is fine.
    assert next(ExpandColumns(columns=["generation"]).process([row]))[1]["distilabel_metadata"] == row["distilabel_metadata"]
    counts = {"statistics_t": {"input_tokens": 10, "output_tokens": 7}}
    three = next(step.process([{"generation": [1, 2, 3], "distilabel_metadata": counts}]))
    assert [r["distilabel_metadata"]["statistics_t"] for r in three] == [{"input_tokens": [3], "output_tokens": [2]}] * 3
    assert next(step.process([{"generation": ["a", "b"]}])) == [{"generation": "a"}, {"generation": "b"}]


def test_expand_columns_split_statistics_in_a_pipeline_keeps_the_token_total() -> None:
    data = [
        {
            "id": i,
            "instructions": [f"{i}-{k}" for k in range(i % 3 + 1)],
            "distilabel_metadata": {"statistics_gen": {"input_tokens": [6 * (i + 1)], "output_tokens": [12]}},
        }
        for i in range(9)
    ]
    with Pipeline("split-statistics") as pipeline:
        load = Rows(rows=data, batch_size=4)
        expand = ExpandColumns(columns={"instructions": "instruction"}, split_statistics=True, input_batch_size=3)
        load >> expand
    rows = pipeline.run(use_cache=False)["default"]["train"].to_list()
    assert [row["instruction"] for row in rows] == [f"{i}-{k}" for i in range(9) for k in range(i % 3 + 1)]
    for kind, total in (("input_tokens", sum(6 * (i + 1) for i in range(9))), ("output_tokens", 12 * 9)):
        assert sum(row["distilabel_metadata"]["statistics_gen"][kind][0] for row in rows) == total
    assert ExpandColumns(columns=["g"], split_statistics=True).dump()["split_statistics"] is True


# -- CombineOutputs ---------------------------------------------------------------------------------------


def test_combine_outputs_process() -> None:
    step = CombineOutputs()
    result = next(
        step.process(
            [{"a": 1, "c": "first", "distilabel_metadata": {"m": 1}}, {"a": 2, "c": "first"}],
            [{"b": 3, "c": "second", "distilabel_metadata": {"m": 2}}, {"b": 4, "c": "second"}],
        )
    )
    assert result == [
        {"a": 1, "b": 3, "c": "second", "distilabel_metadata": {"m": [1, 2]}},
        {"a": 2, "b": 4, "c": "second", "distilabel_metadata": {}},
    ]


def test_combine_outputs_beam_native() -> None:
    _run_native(CombineOutputs(), [{"a": 1}], [{"a": 1, "distilabel_metadata": {}}])


# -- distilabel-style Pipeline runs -----------------------------------------------------------------------


def test_pipeline_group_columns_converging_branches_keep_identical_rows_distinct() -> None:
    with Pipeline("group-columns") as pipeline:
        load = Rows(rows=[{"instruction": "same"}] * 4, batch_size=3)
        b = Tag(tag="b", input_batch_size=2)
        c = Tag(tag="c", input_batch_size=3)
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        load >> [b, c] >> group
    distiset = pipeline.run()
    rows = distiset["default"]["train"].to_list()
    assert len(rows) == 4
    for row in rows:
        assert row["instruction"] == "same"
        assert row["generations"] == ["same-b", "same-c"]
        assert row["model_names"] == ["b", "c"]
        assert row["distilabel_metadata"] == {"stats_b": 1, "stats_c": 1}


def test_pipeline_combine_outputs_and_keep_columns() -> None:
    with Pipeline("combine-keep") as pipeline:
        load = Rows(rows=[{"instruction": f"q{i}"} for i in range(5)], batch_size=2)
        b = Tag(tag="b", output_mappings={"generation": "gen_b"})
        c = Tag(tag="c", output_mappings={"generation": "gen_c"})
        combine = CombineOutputs()
        keep = KeepColumns(columns=["gen_c", "instruction", "gen_b"])
        load >> [b, c] >> combine >> keep
    rows = pipeline.run()["default"]["train"].to_list()
    assert rows == [{"gen_c": f"q{i}-c", "instruction": f"q{i}", "gen_b": f"q{i}-b"} for i in range(5)]


def test_pipeline_expand_columns_follows_input_order() -> None:
    data = [{"id": i, "generations": [f"{i}-{k}" for k in range(i % 3 + 1)]} for i in range(12)]
    with Pipeline("expand") as pipeline:
        load = Rows(rows=data, batch_size=4)
        expand = ExpandColumns(columns={"generations": "generation"}, input_batch_size=5)
        keep = KeepColumns(columns=["id", "generation"])
        load >> expand >> keep
    rows = pipeline.run()["default"]["train"].to_list()
    expected = [{"id": i, "generation": f"{i}-{k}"} for i in range(12) for k in range(i % 3 + 1)]
    assert rows == expected
