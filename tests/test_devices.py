"""Device placement and distribution, run for real: replicas on logical CPU devices and two
worker processes on 127.0.0.1 (TensorFlow fixes its devices once it starts, so each run is a
process of its own)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from vaepipe.devices import (STRATEGIES, require_tf_config, select_strategy, set_up_tensorflow,
                             use_xla)
from vaepipe.errors import PipelineError
from vaepipe.model import VAE
from vaepipe.tf_runtime import tf
from vaepipe.training import build_trainer, workers_slices

from conftest import PROJECT_ROOT, free_ports
from test_download import children, is_running, wait_for
from test_training import tiny_images, tiny_params, write_prepared


def train_params(**changes):
    params = tiny_params()
    return params.train.model_copy(update=changes)


def test_one_device_takes_the_cpu_without_a_gpu():
    chosen = select_strategy(train_params(strategy="one_device"), [], 10)
    assert isinstance(chosen, tf.distribute.OneDeviceStrategy)
    assert chosen.extended.worker_devices[0].endswith("CPU:0")


def test_a_visible_gpu_is_taken_unless_the_cpu_is_asked_for(monkeypatch):
    # Strategies check device names against the machine, so record what would be built.
    built = []
    monkeypatch.setattr(tf.distribute, "OneDeviceStrategy", built.append)
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    for device in ("auto", "gpu", "cpu"):
        STRATEGIES["one_device"](train_params(device=device), [gpu])
    assert built == ["/gpu:0", "/gpu:0", "/cpu:0"]


@pytest.mark.parametrize("changes, batch, message", [
    ({"device": "gpu"}, 10, r"^params.yaml: train.device: gpu asked for, but TensorFlow sees "
                            r"no GPU$"),
    ({"strategy": "mirrored", "cpu_replicas": 1}, 10,
     r"^params.yaml: train.strategy: mirrored needs at least 2 devices, this machine gives 1 "),
])
def test_impossible_choices_are_one_line(changes, batch, message):
    with pytest.raises(PipelineError, match=message):
        select_strategy(train_params(**changes), [], batch)


@pytest.mark.parametrize("value, message", [
    (None, r"^train.strategy: multi_worker needs the TF_CONFIG environment variable, e.g. "),
    ("{not json", r"^TF_CONFIG: not a cluster of workers with this task in it \(JSONDecodeError"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
     r"^TF_CONFIG: .*task must be"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
     r"^TF_CONFIG: .*cluster.worker must be a list of host:port addresses"),
])
def test_a_missing_or_malformed_tf_config_is_one_line(value, message):
    environ = {} if value is None else {"TF_CONFIG": value}
    with pytest.raises(PipelineError, match=message):
        require_tf_config(environ)


# In processes of their own.

PREAMBLE = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_training import tiny_images, tiny_params
from vaepipe.devices import select_strategy, set_up_tensorflow
from vaepipe.training import build_trainer, epoch_chunks
"""


def python_code(code: str) -> str:
    return PREAMBLE.format(tests=str(PROJECT_ROOT / "tests")) + code


def run_python(code: str, timeout: int = 180) -> str:
    result = subprocess.run([sys.executable, "-c", python_code(code)], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


MIRRORED_VS_ONE_DEVICE = """
def one_epoch(strategy_name, zero_noise):
    params = tiny_params()
    params = params.model_copy(update={"train": params.train.model_copy(
        update={"strategy": strategy_name, "cpu_replicas": 2})})
    set_up_tensorflow(params.seed)
    strategy = select_strategy(params.train, [], params.batch_size)
    trainer = build_trainer(params, strategy, steps_per_epoch=6)
    if zero_noise:  # the same noise in both layouts: none
        trainer._eps = lambda batch, seed: tf.zeros([batch, params.z_dim])
    images, labels = tiny_images(n=60)
    trainer.train_epoch(epoch_chunks(images, labels, params, strategy), 6, 1)
    return strategy, trainer

from vaepipe.tf_runtime import tf
strategy, mirrored = one_epoch("mirrored", zero_noise=True)  # first: it splits the CPU
_, single = one_epoch("one_device", zero_noise=True)
assert strategy.num_replicas_in_sync == 2, strategy.extended.worker_devices
difference = max(float(np.max(np.abs(a.numpy() - b.numpy())))
                 for a, b in zip(single.model.weights, mirrored.model.weights))
strategy, noisy = one_epoch("mirrored", zero_noise=False)
draws = strategy.run(lambda: noisy._eps(4, noisy._noise_seed(7, noisy.replication.replica_id())))
first, second = (t.numpy() for t in strategy.experimental_local_results(draws))
print(json.dumps({"difference": difference, "devices": list(strategy.extended.worker_devices),
                  "replicas_differ": bool(np.any(first != second))}))
"""


def test_mirrored_over_two_logical_cpus_matches_one_device_and_draws_noise_per_replica():
    result = json.loads(run_python(MIRRORED_VS_ONE_DEVICE).splitlines()[-1])
    assert len(result["devices"]) == 2 and all("CPU" in d for d in result["devices"])
    assert result["difference"] < 1e-5  # the same global batch, the same gradient
    assert result["replicas_differ"]


WORKER = """
import os, hashlib
from pathlib import Path
from vaepipe.training import train
params = tiny_params(epochs=int(os.environ["EPOCHS"]))
params = params.model_copy(update={"train": params.train.model_copy(
    update={"strategy": "multi_worker"})})
root = Path(os.environ["WORKER_DIR"])
model = train(params, root / "prepared", root / "model", root / "samples.npy", root / "live",
              root / "checkpoint")
digest = hashlib.sha256(b"".join(w.numpy().tobytes() for w in model.weights)).hexdigest()
print(json.dumps({"weights": digest}))
"""


def start_two_workers(root: Path, epochs: int,
                      workers: list[str] | None = None) -> tuple[list[subprocess.Popen], list[str]]:
    """Two worker processes on 127.0.0.1, each training in a folder of its own under `root`
    (its log in stderr.log there); the workers' addresses."""
    workers = workers or [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        folder = root / f"worker{index}"
        if not folder.exists():
            images, labels = tiny_images(n=60)
            write_prepared(folder / "prepared", images, labels)
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", python_code(WORKER)], stdout=subprocess.PIPE,
            stderr=(folder / "stderr.log").open("w"), text=True,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config), "WORKER_DIR": str(folder),
                 "EPOCHS": str(epochs)}))
    return processes, workers


def finish(root: Path, processes: list[subprocess.Popen]) -> list[str]:
    """The weights' digest each worker printed, once both succeeded."""
    try:
        stdouts = [process.communicate(timeout=240)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for index, process in enumerate(processes):
        assert process.returncode == 0, (root / f"worker{index}" / "stderr.log").read_text()
    return [json.loads(stdout.splitlines()[-1])["weights"] for stdout in stdouts]


def test_two_workers_on_localhost_agree_and_only_the_chief_writes(tmp_path):
    digests = finish(tmp_path, start_two_workers(tmp_path, epochs=2)[0])
    assert digests[0] == digests[1]
    for index in range(2):
        assert ("multi_worker: no checkpoints (every worker would need the same one back); a "
                "stopped run starts again at epoch 1\n") in (
            tmp_path / f"worker{index}" / "stderr.log").read_text()
    assert sorted(p.name for p in (tmp_path / "worker0").iterdir()) == [
        "live", "model", "prepared", "samples.npy", "stderr.log"]
    assert sorted(p.name for p in (tmp_path / "worker1").iterdir()) == ["prepared", "stderr.log"]


def test_two_workers_killed_mid_run_and_restarted_end_bit_identical_to_a_run_never_stopped(
        tmp_path):
    unbroken = finish(tmp_path / "unbroken", start_two_workers(tmp_path / "unbroken", 30)[0])
    stopped = tmp_path / "stopped"
    processes, workers = start_two_workers(stopped, 30)
    chief_log = stopped / "worker0" / "stderr.log"
    started = time.monotonic()
    while not re.search(r"^epoch +1/30 ", chief_log.read_text(), re.MULTILINE):
        assert all(process.poll() is None for process in processes), chief_log.read_text()
        assert time.monotonic() - started < 180
        time.sleep(0.05)
    for process in processes:
        process.kill()
        process.wait()
    assert not (stopped / "worker0" / "model").exists()  # killed before it wrote anything
    restarted = finish(stopped, start_two_workers(stopped, 30, workers)[0])
    assert restarted == unbroken


def test_workers_of_two_replicas_each_feed_every_replica_its_own_slice_of_every_batch():
    # 2 chunks of (batch 8, 3 steps); 2 workers x 2 local replicas: 2 images a replica.
    chunks = np.arange(2 * 8 * 3).reshape(2, 8, 3)
    fed = {}
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                             num_replicas_in_sync=4)
        elements = list(workers_slices(tf.data.Dataset.from_tensor_slices(chunks), 8, context))
        for index, element in enumerate(elements):  # handed to the local replicas in turn
            chunk, local = divmod(index, 2)
            fed[chunk, worker * 2 + local] = element.numpy()
    for chunk in range(2):
        pieces = [fed[chunk, replica] for replica in range(4)]
        assert all(piece.shape == (2, 3) for piece in pieces)
        np.testing.assert_array_equal(np.concatenate(pieces), chunks[chunk])  # the whole batch


def answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


# A parent that runs its arguments as a command and waits, as DVC runs a stage.
PARENT = ["-c", "import subprocess, sys; subprocess.run(sys.argv[1:])", sys.executable]


def train_stage_as_worker(folder: Path, index: int, timeout: int, launcher: tuple = (),
                          **environ: str) -> tuple[subprocess.Popen, list[str]]:
    """`python stages/train.py` (after `launcher`) in a folder of its own as worker `index` of
    two, under `multi_worker` with `train.peer_timeout_seconds: timeout`; the workers'
    addresses."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["train"].update(strategy="multi_worker", peer_timeout_seconds=timeout)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    process = subprocess.Popen([sys.executable, *launcher,
                                str(PROJECT_ROOT / "stages" / "train.py")],
                               cwd=folder, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               env={**os.environ, **environ, "TF_CONFIG": json.dumps(tf_config)})
    return process, workers


def worker_without_its_peer(folder: Path, timeout: int,
                            launcher: tuple = ()) -> tuple[subprocess.Popen, str]:
    """Worker 0 of two started alone, once it waits inside TensorFlow (its own server
    answers); its peer's address."""
    process, workers = train_stage_as_worker(folder, 0, timeout, launcher)
    started = time.monotonic()
    while not answers(workers[0]):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() - started < 120
        time.sleep(0.2)
    return process, workers[1]


def test_a_worker_whose_peer_never_starts_gives_up_at_the_timeout_naming_it(tmp_path):
    process, peer = worker_without_its_peer(tmp_path, timeout=3)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert time.monotonic() - started < 30
    assert process.returncode == -signal.SIGKILL
    assert (f"error: train.strategy: multi_worker: no answer from worker 1 at {peer} after 3 s "
            f"(train.peer_timeout_seconds); start every worker of TF_CONFIG\n") in stderr


@pytest.mark.parametrize("number, returncode", [(signal.SIGINT, -signal.SIGINT),
                                                (signal.SIGTERM, -signal.SIGKILL)])
def test_ctrl_c_or_sigterm_stops_a_worker_waiting_for_its_peer_at_once(tmp_path, number,
                                                                        returncode):
    process, _ = worker_without_its_peer(tmp_path, timeout=100)
    time.sleep(1)  # inside TensorFlow's wait
    started = time.monotonic()
    process.send_signal(number)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 10
    assert process.returncode == returncode
    assert "no answer" not in stderr and "Traceback" not in stderr


def test_a_worker_waiting_for_its_peer_dies_with_its_parent(tmp_path):
    parent, _ = worker_without_its_peer(tmp_path, timeout=100, launcher=PARENT)
    [worker] = children(parent.pid)
    parent.kill()
    parent.wait()
    assert wait_for(lambda: not is_running(worker), 10)


def test_a_worker_other_than_the_chief_refuses_to_run_under_dvc(tmp_path):
    process, _ = train_stage_as_worker(tmp_path, 1, timeout=3, DVC_STAGE="train")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert stderr.splitlines()[-1] == (
        "error: train.strategy: multi_worker: worker 1 is run by DVC, "
        "which would record outputs that only worker 0 writes; run `python stages/train.py` on "
        "the other workers (`dvc repro train` on worker 0 alone)")


def test_the_gpu_check_says_in_one_line_when_there_is_no_gpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: run benchmarks/gpu_check.py itself")
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "gpu_check.py")],
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "no GPU visible to TensorFlow: nothing to check on this machine\n", "")


@pytest.mark.parametrize("jit_compile, architecture, device, expected", [
    ("auto", "mlp", "/cpu:0", (True, "train.jit_compile: auto, mlp on a CPU")),
    ("auto", "conv", "/gpu:0", (True, "train.jit_compile: auto, conv on a GPU")),
    ("auto", "conv", "/cpu:0", (False, "train.jit_compile: auto, conv on a CPU, where XLA's "
                                       "convolutions are slow; true forces it")),
    (True, "conv", "/cpu:0", (True, "train.jit_compile: true")),
    (False, "mlp", "/gpu:0", (False, "train.jit_compile: false")),
])
def test_xla_is_chosen_per_architecture_and_device_and_said_why(jit_compile, architecture,
                                                                device, expected):
    model = VAE([4], [4], [4], "relu", 0.5, 2, architecture=architecture)
    assert use_xla(jit_compile, model, device=device) == expected


def test_a_conv_trainer_on_a_cpu_compiles_without_xla_and_says_so(capsys):
    params = tiny_params(architecture="conv", conv_filters=(2, 3))
    set_up_tensorflow(params.seed)
    trainer = build_trainer(params, select_strategy(params.train, [], params.batch_size), 6)
    assert "XLA: off (train.jit_compile: auto, conv on a CPU" in capsys.readouterr().err
    assert trainer.train_steps._jit_compile is False
    assert trainer.per_image_losses._jit_compile is False
