"""pipelines/docs_pipeline.py runs offline against the local server it starts itself."""

from __future__ import annotations

from beam_distil.distiset import Distiset
from pipelines import docs_pipeline


def test_docs_pipeline_job_writes_its_dataset(tmp_path, capsys):
    output = tmp_path / "out"
    docs_pipeline.main(["--num-rows", "5", "--output", str(output), "--direct_running_mode=in_memory"])

    rows = Distiset.load_from_disk(str(output))["default"]["train"].to_list()
    assert [row["instruction"] for row in rows] == docs_pipeline.SAMPLE_INSTRUCTIONS[:5]
    assert all(row["model_names"] == ["model-a", "model-b", "model-c"] for row in rows)
    assert f"Dataset written to {output}" in capsys.readouterr().out
