"""Data-parallel training in two real processes (torchrun, gloo, CPU).

``distributed_worker.py`` runs in both processes: a checkpointed fit, then a
fit interrupted in its second epoch and resumed from its checkpoint. This
module launches it once and checks what each process recorded against a
single-process fit.
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

from .distributed_worker import classifier, digits  # noqa: E402

WORKER = Path(__file__).with_name("distributed_worker.py")
N_IMAGES, BATCH_SIZE, EPOCHS, VALID = 240, 16, 2, 0.25


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(WORKER.parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               str(WORKER), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = [torch.load(out / f"rank{k}.pt", weights_only=False) for k in (0, 1)]
    return out, results


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


def test_update_bn_averages_over_both_shards(ranks):
    _, results = ranks
    for result in results:
        assert result["full"]["history"][-1]["bn_updated"] is True
        assert result["full"]["bn"]  # the network has BatchNorm layers
        for (mean, var), (ref_mean, ref_var) in zip(result["full"]["bn"],
                                                   result["full"]["bn_reference"],
                                                   strict=True):
            torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(var, ref_var, rtol=1e-5, atol=1e-6)


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
