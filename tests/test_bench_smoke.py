"""Smoke test of bench/run.py: it runs end to end and writes its results.

Timings are never asserted: they belong to the benchmark, not to tests.
"""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("skimgcls_bench_run", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_json_and_markdown(bench, tmp_path, capsys):
    res = bench.main(["--quick", "--datasets", "digits", "--skip", "onnx",
                      "--device", "cpu", "--outdir", str(tmp_path), "--out", "smoke"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    table = (tmp_path / "smoke.md").read_text()
    digits = saved["datasets"]["digits"]
    assert set(digits["fit_predict"]["variants"]) == {
        "hand_fp32", "hand_bf16", "skorch", "cnn_default", "cnn_tuned",
        "cnn_tuned_no_dropout"}
    assert digits["fit_predict"]["variants"]["hand_bf16"]["precision"] == "bf16"
    for stats in digits["fit_predict"]["variants"].values():
        for key in ("fit_images_per_s", "predict1_images_per_s",
                    "predict128_images_per_s", "test_accuracy", "peak_rss_mb"):
            assert stats[key]["median"] > 0 or key == "test_accuracy"
        assert stats["fit_gflops"] > 0
    assert set(digits["overhead"]) >= {"raw_slicing", "skorch", "cnn_classifier"}
    assert set(digits["scaling"]) == {"100", "200"}
    assert digits["stream_predict"]["n_predictions"] == 2000
    assert saved["load"]["before"] is None or len(saved["load"]["before"]) == 3
    assert "| cnn_default |" in table and "Ceiling" in table
    assert "| hand_bf16 |" in table and "hand-written bf16 + channels_last loop" in table
    assert res["ceiling_gflops"]["fp32"] > 0
    assert "| hand_fp32 |" in capsys.readouterr().out
