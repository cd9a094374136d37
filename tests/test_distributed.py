"""Data-parallel training in two real processes (torchrun, gloo, CPU).

``distributed_worker.py`` runs in both processes. This module launches it
three times and checks what each process recorded, also against
single-process fits: first on in-memory arrays (a checkpointed fit, then a
fit interrupted in its second epoch and resumed from its checkpoint), then on
PNG files (file paths go through the DataLoader that ``accelerator.prepare``
shards) and with a backbone unfrozen mid-fit (DistributedDataParallel must be
wrapped again), last a ``head_init='probe'`` fit (one linear probe per shard,
averaged).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")
if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available",
                allow_module_level=True)

import skimgcls  # noqa: E402

from .distributed_worker import (  # noqa: E402
    N_FILES,
    N_PROBE,
    VALID_BATCH_SIZE,
    classifier,
    digit_files,
    digits,
)

WORKER = Path(__file__).with_name("distributed_worker.py")
N_IMAGES, BATCH_SIZE, EPOCHS, VALID = 240, 16, 2, 0.25


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out, *args):
    """Run the worker in 2 processes; what each recorded, by rank."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(WORKER.parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               str(WORKER), str(out), *map(str, args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [torch.load(out / f"rank{k}.pt", weights_only=False) for k in (0, 1)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return out, launch(out)


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("png")
    digit_files(folder, N_FILES, write=True)
    return folder


@pytest.fixture(scope="module")
def second(tmp_path_factory, png_folder):
    """The second launch: file paths, then a backbone unfrozen mid-fit."""
    return launch(tmp_path_factory.mktemp("ddp_files"), png_folder)


@pytest.fixture(scope="module")
def single():
    X, y = digits(N_IMAGES)
    return classifier(accelerator=None, precision="fp32").fit(X, y)


def max_difference(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_processes_form_a_group(ranks):
    _, results = ranks
    for result in results:
        assert result["full"]["distributed_type"] == "DistributedType.MULTI_CPU"
        assert result["full"]["num_processes"] == 2


def test_each_process_trains_on_half_of_every_epoch(ranks, single):
    _, results = ranks
    n_batches = single.history_[-1, "train_batch_count"]
    assert n_batches == int(np.ceil(N_IMAGES * (1 - VALID) / BATCH_SIZE)) == 12
    for result in results:
        assert [row["train_batch_count"] for row in result["full"]["history"]] == [6] * EPOCHS
    for epoch in range(1, EPOCHS + 1):
        shards = [[image for e, batch in result["full"]["batches"] if e == epoch
                   for image in batch] for result in results]
        # disjoint shards that together are the training split, once
        assert not set(shards[0]) & set(shards[1])
        assert len(shards[0]) + len(shards[1]) == N_IMAGES * (1 - VALID)
    # a new permutation in the second epoch
    assert results[0]["full"]["batches"][0] != results[0]["full"]["batches"][6]


def test_processes_end_identical_and_unlike_a_single_process(ranks, single):
    _, results = ranks
    a, b = (result["full"]["state"] for result in results)
    assert max_difference(a, b) == 0
    plain = single.module_.state_dict()
    assert max_difference(a, plain) > 1e-3


def test_validation_metrics_cover_the_whole_split(ranks):
    _, results = ranks
    for result in results:
        history = result["full"]["history"]
        for row, (loss, acc) in zip(history, result["full"]["full_valid"], strict=True):
            # valid_acc: multiples of 1/60, not of 1/30 as on one shard
            assert row["valid_acc"] == pytest.approx(acc, abs=1e-9)
            assert row["valid_loss"] == pytest.approx(loss, rel=1e-5)
            assert sum(b["valid_batch_size"] for b in row["batches"]
                       if "valid_batch_size" in b) == N_IMAGES * VALID
    assert ([r["valid_loss"] for r in results[0]["full"]["history"]]
            == [r["valid_loss"] for r in results[1]["full"]["history"]])


def test_one_cycle_spans_the_steps_of_one_process(ranks):
    _, results = ranks
    for result in results:
        assert result["full"]["scheduler_total"] == EPOCHS * 6
        assert result["full"]["scheduler_steps"] == EPOCHS * 6


def assert_bn_matches_one_pass(fit):
    """update_bn ran, and its statistics are those of one pass over all batches."""
    assert fit["history"][-1]["bn_updated"] is True
    assert fit["bn"]  # the network has BatchNorm layers
    for (mean, var), (ref_mean, ref_var) in zip(fit["bn"], fit["bn_reference"],
                                               strict=True):
        torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(var, ref_var, rtol=1e-5, atol=1e-6)


def test_update_bn_averages_over_both_shards(ranks):
    _, results = ranks
    for result in results:
        assert_bn_matches_one_pass(result["full"])


def test_an_interrupted_fit_resumes_to_the_same_model(ranks):
    _, results = ranks
    for result in results:
        assert result["interrupted"]
        resumed = result["resumed"]
        assert {epoch for epoch, _ in resumed["batches"]} == {2}  # epoch 1 restored
        assert len(resumed["history"]) == EPOCHS
        assert max_difference(resumed["state"], result["full"]["state"]) == 0


def test_the_saved_model_predicts_in_one_process(ranks, single):
    out, results = ranks
    X, y = digits(N_IMAGES)
    model = skimgcls.load(out / "model.skimgcls")
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba, results[0]["full"]["proba"], atol=1e-6)
    np.testing.assert_allclose(proba, results[1]["full"]["proba"], atol=1e-6)
    assert abs(model.score(X, y) - single.score(X, y)) < 0.15


# -- file paths -----------------------------------------------------------------
# 256 PNG files: 192 training images (12 batches of 16), 64 validation images
# in batches of 24 (24, 24, 16: one process is short of a batch).
N_TRAIN_FILES, N_VALID_FILES = 192, 64


@pytest.fixture(scope="module")
def single_files(png_folder):
    paths, y = digit_files(png_folder, N_FILES)
    return classifier(accelerator=None, precision="fp32",
                      iterator_valid__batch_size=VALID_BATCH_SIZE).fit(paths, y)


def test_files_each_process_trains_on_half_of_every_epoch(second, single_files):
    results = [result["files"] for result in second]
    assert single_files.history_[-1, "train_batch_count"] == N_TRAIN_FILES // BATCH_SIZE
    for result in results:
        assert [row["train_batch_count"] for row in result["history"]] == [6] * EPOCHS
    for epoch in range(1, EPOCHS + 1):
        shards = [[image for e, batch in result["batches"] if e == epoch
                   for image in batch] for result in results]
        # disjoint shards that together are the training split, each image
        # once (the files decode to distinct images)
        assert not set(shards[0]) & set(shards[1])
        assert len(set(shards[0]) | set(shards[1])) == N_TRAIN_FILES
        assert len(shards[0]) + len(shards[1]) == N_TRAIN_FILES
    assert results[0]["batches"][0] != results[0]["batches"][6]  # reshuffled


def test_files_processes_end_identical_and_unlike_a_single_process(second,
                                                                   single_files):
    a, b = (result["files"]["state"] for result in second)
    assert max_difference(a, b) == 0
    assert max_difference(a, single_files.module_.state_dict()) > 1e-3


def test_files_validation_metrics_cover_the_whole_split(second):
    for result in second:
        history = result["files"]["history"]
        for row, (loss, acc) in zip(history, result["files"]["full_valid"],
                                    strict=True):
            assert row["valid_acc"] == pytest.approx(acc, abs=1e-9)
            assert row["valid_loss"] == pytest.approx(loss, rel=1e-5)
            # two gathered steps: 24 + 24, then 16 and the padding of the
            # process without a third batch, dropped
            assert [b["valid_batch_size"] for b in row["batches"]
                    if "valid_batch_size" in b] == [48, N_VALID_FILES - 48]
    assert ([r["valid_loss"] for r in second[0]["files"]["history"]]
            == [r["valid_loss"] for r in second[1]["files"]["history"]])


def test_files_update_bn_averages_over_both_shards(second):
    for result in second:
        assert_bn_matches_one_pass(result["files"])


def test_unshuffled_files_train_as_the_same_images_in_memory(second):
    """Files and arrays give the same batches to the same processes.

    Only without shuffling: Accelerate's prepared DataLoader seeds its
    sampler's generator with a draw of its own when it is prepared (and
    sends the main process's generator state to the others), whereas the
    in-memory batches draw their permutation as a single-process DataLoader
    does; so a shuffled fit on files and one on arrays shard different
    permutations (each one correctly). An uneven last training batch would
    differ too: Accelerate fills it up with images from the start, the
    in-memory shards keep it short. Here the training split is 12 full
    batches, and without shuffling both take batches 0, 2, 4... on the main
    process and 1, 3, 5... on the other: they train the same weights.
    """
    for result in second:
        fits = result["unshuffled"]
        assert max_difference(fits["files"], fits["arrays"]) == 0
    assert max_difference(second[0]["unshuffled"]["files"],
                          second[1]["unshuffled"]["files"]) == 0


# -- a backbone unfrozen mid-fit ------------------------------------------------
def test_an_unfrozen_backbone_trains_in_step_on_both_processes(second):
    """DistributedDataParallel averages only the gradients of the parameters
    that were trainable when it wrapped the module: unfrozen later, the
    backbone would train on each process's own gradients, and the processes
    would drift apart silently. The module is wrapped again when the
    trainable parameters change."""
    results = [result["unfreeze"] for result in second]
    for result in results:
        history = result["history"]
        assert "unfrozen" not in history[0] and history[1]["unfrozen"] is True
        assert [row["train_batch_count"] for row in history] == [2, 2]
        start, epoch_2, end = result["body"]  # when epochs 1 and 2 begin, the end
        assert max_difference(start, epoch_2) == 0  # frozen in epoch 1
        for name in result["parameters"]:  # every backbone parameter trained
            assert not torch.equal(epoch_2[name], end[name]), name
        grads = dict(result["grads"])  # last batch of each epoch
        assert all(g is None for g in grads[1])
        assert all(g is not None for g in grads[2])
        # Unfrozen as in one process: no block left frozen, so every module
        # of the body trains in train mode (BatchNorm statistics move, dropout
        # is on) from epoch 2 on.
        assert result["frozen_blocks"] == 0
        eval_modules = result["eval_modules"]
        assert [epoch for epoch, _ in eval_modules] == [1, 1, 2, 2]
        assert all(n > 0 for epoch, n in eval_modules if epoch == 1)
        assert [n for epoch, n in eval_modules if epoch == 2] == [0, 0]
        bn_1, bn_2 = result["bn"]  # when epochs 1 and 2 end
        assert bn_1  # the body has BatchNorm layers
        for mean_1, mean_2 in zip(bn_1, bn_2, strict=True):
            assert not torch.equal(mean_1, mean_2)
    # the same averaged gradients at every step, the same weights in the end
    assert results[0]["grads"] == results[1]["grads"]
    assert results[0]["eval_modules"] == results[1]["eval_modules"]
    for bn_a, bn_b in zip(results[0]["bn"], results[1]["bn"], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(bn_a, bn_b, strict=True))
    assert max_difference(results[0]["body"][-1], results[1]["body"][-1]) == 0
    assert max_difference(results[0]["state"], results[1]["state"]) == 0


# -- head_init='probe' ----------------------------------------------------------
@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """The third launch: a pretrained backbone fitted with head_init='probe'."""
    return launch(tmp_path_factory.mktemp("ddp_probe"), "probe")


def test_probe_head_is_the_average_of_the_shard_probes_on_both_processes(probe):
    """Each process fits a probe on its shard; both start training from their
    average, weighted by the shards' images, and end identical.

    Without the average each process would start from its own probe, and
    DistributedDataParallel (which broadcasts the weights only when it wraps
    the module, before the probe) would train two different networks."""
    probes = [result["probes"] for result in probe]
    assert [len(p) for p in probes] == [1, 1]  # one probe per process
    (a,), (b,) = probes
    # the shards: 2 batches of 16 and 1, together the training images once
    assert [len(a["y"]), len(b["y"])] == [32, 16]
    _, y = digits(N_PROBE)
    np.testing.assert_array_equal(np.bincount(a["y"], minlength=10)
                                  + np.bincount(b["y"], minlength=10),
                                  np.bincount(y, minlength=10))
    assert np.abs(a["coef"] - b["coef"]).max() > 1e-2  # two different probes
    n_a, n_b = len(a["y"]), len(b["y"])
    for key, index in (("coef", 0), ("intercept", 1)):
        average = (n_a * a[key].astype(np.float64)
                   + n_b * b[key].astype(np.float64)) / (n_a + n_b)
        for result in probe:
            start = result["start"][index].double().numpy()
            np.testing.assert_allclose(start, average, rtol=1e-6, atol=1e-6)
    # the same head, bit for bit, before the first step on both processes
    for start_a, start_b in zip(probe[0]["start"], probe[1]["start"], strict=True):
        assert torch.equal(start_a, start_b)
    for result in probe:
        assert [row["train_batch_count"] for row in result["history"]] == [2]
    # and the same network at the end, BatchNorm statistics and counts included
    # (update_bn counted 2 batches on one process, 1 on the other: 3 in all)
    a_end, b_end = (result["state"] for result in probe)
    assert max_difference(a_end, b_end) == 0
    assert {v.item() for k, v in a_end.items() if k.endswith("num_batches_tracked")} == {3}
