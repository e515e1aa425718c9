"""Where TensorFlow runs: determinism, the distribution strategy, and which process writes.

`train.strategy` picks one of three builders, each `(train params, visible GPUs) -> Strategy`:
- one_device: one GPU when TensorFlow sees one (or the CPU, or what `train.device` names);
- mirrored: MirroredStrategy over every visible GPU, or over `train.cpu_replicas` logical CPU
  devices when there is none (or `train.device` is cpu), so the path runs on any machine;
- multi_worker: MultiWorkerMirroredStrategy over each worker's GPUs (none with `train.device`
  cpu), configured by the standard TF_CONFIG environment variable.
`use_xla` is the one place that decides whether training and evaluation are XLA-compiled.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vaepipe.errors import PipelineError
from vaepipe.params import TrainParams
from vaepipe.tf_runtime import keras, tf


def set_up_tensorflow(seed: int) -> list:
    """Seed every generator, make ops deterministic, and let GPUs allocate memory as needed."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return gpus


def _wanted_gpus(train: TrainParams, gpus: list) -> list:
    if train.device == "gpu" and not gpus:
        raise PipelineError("params.yaml: train.device: gpu asked for, but TensorFlow sees no GPU")
    return [] if train.device == "cpu" else gpus


def _one_device(train: TrainParams, gpus: list) -> tf.distribute.Strategy:
    return tf.distribute.OneDeviceStrategy("/gpu:0" if _wanted_gpus(train, gpus) else "/cpu:0")


def _mirrored(train: TrainParams, gpus: list) -> tf.distribute.Strategy:
    wanted = _wanted_gpus(train, gpus)
    if wanted:
        devices = [f"/gpu:{i}" for i in range(len(wanted))]
    else:
        devices = [device.name for device in _logical_cpus(train.cpu_replicas)]
    if len(devices) < 2:
        raise PipelineError(
            f"params.yaml: train.strategy: mirrored needs at least 2 devices, this machine "
            f"gives {len(devices)} ({', '.join(devices)}); set train.cpu_replicas to 2 or more "
            f"to split the CPU, or use one_device")
    return tf.distribute.MirroredStrategy(devices)


def _logical_cpus(count: int) -> list:
    """Split the CPU into `count` logical devices, as TensorFlow's own distribution tests do."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:  # TensorFlow has already started: keep what it has
        pass
    return tf.config.list_logical_devices("CPU")


def require_tf_config(environ=os.environ) -> dict:
    """TF_CONFIG, checked: a cluster of workers and this process's place in it."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        example = {"cluster": {"worker": ["host1:12345", "host2:12345"]},
                   "task": {"type": "worker", "index": 0}}
        raise PipelineError(f"train.strategy: multi_worker needs the TF_CONFIG environment "
                            f"variable, e.g. TF_CONFIG='{json.dumps(example)}'")
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        addresses = isinstance(workers, list) and workers and all(
            isinstance(worker, str) and ":" in worker for worker in workers)
        if not addresses:
            raise ValueError("cluster.worker must be a list of host:port addresses")
        if task.get("type") != "worker" or not 0 <= task.get("index", -1) < len(workers):
            raise ValueError(f"task must be {{\"type\": \"worker\", \"index\": 0..."
                             f"{len(workers) - 1}}}")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PipelineError(f"TF_CONFIG: not a cluster of workers with this task in it "
                            f"({type(error).__name__}: {error})") from None
    return config


# Run beside a worker while its strategy waits for the others: until its stdin closes (the worker
# got through, or died), ends the worker when a SIGTERM is pending for it (the worker holds it
# off, see awaiting_peers), or after `timeout` seconds names the workers that do not answer.
PEER_WATCHDOG = """
import select, signal, socket, sys, os, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to take
timeout, worker = float(sys.argv[1]), int(sys.argv[2])
peers = list(zip(sys.argv[3::2], sys.argv[4::2]))  # (index, host:port) of every other worker

def sigterm_pending():
    with open(f"/proc/{worker}/status") as status:
        shared = next(line for line in status if line.startswith("ShdPnd:"))
    return int(shared.split()[1], 16) >> (signal.SIGTERM - 1) & 1

def answers(address):
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False

deadline = time.monotonic() + timeout
while not select.select([sys.stdin], [], [], 0.1)[0]:
    if sigterm_pending():
        break
    if time.monotonic() > deadline:
        silent = [(index, address) for index, address in peers if not answers(address)]
        named = ", ".join(f"worker {index} at {address}" for index, address in silent or peers)
        why = "no answer from" if silent else "the cluster did not form with"
        print(f"error: train.strategy: multi_worker: {why} {named} after {timeout:g} s "
              f"(train.peer_timeout_seconds); start every worker of TF_CONFIG",
              file=sys.stderr, flush=True)
        break
else:
    sys.exit(0)  # the worker got through, or died
os.kill(worker, signal.SIGKILL)
"""
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


@contextmanager
def awaiting_peers(config: dict, timeout: float) -> Iterator[None]:
    """While the strategy waits for the other workers (in TensorFlow's C++, where Python's
    signal handlers cannot run): Ctrl-C and SIGTERM end the process at once, a watchdog gives
    up after `timeout` seconds naming the workers that do not answer, and the process dies with
    its parent (DVC): killed while it waits, stopped as by SIGTERM later.

    TensorFlow takes SIGTERM for its preemption notice while it waits, so no thread may take
    it: the stage's threads were started with it blocked (stages/_environment.py), this one
    blocks it now, and the watchdog, seeing it pending, kills the process."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    workers, me = config["cluster"]["worker"], config["task"]["index"]
    peers = [part for index, address in enumerate(workers) if index != me
             for part in (str(index), address)]
    watchdog = subprocess.Popen([sys.executable, "-c", PEER_WATCHDOG, str(timeout),
                                 str(os.getpid()), *peers], stdin=subprocess.PIPE)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # not the watchdog's
    handlers = {number: signal.signal(number, signal.SIG_DFL)
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:  # Python's handlers back in place of TensorFlow's, then SIGTERM let in
        for number, handler in handlers.items():
            signal.signal(number, handler)
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        watchdog.stdin.close()
        watchdog.wait()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _multi_worker(train: TrainParams, gpus: list) -> tf.distribute.Strategy:
    config = require_tf_config()
    index = config["task"]["index"]
    if index != 0 and os.environ.get("DVC_STAGE"):  # DVC sets it for the commands it runs
        raise PipelineError(
            f"train.strategy: multi_worker: worker {index} is run by DVC, which would record "
            f"outputs that only worker 0 writes; run `python stages/train.py` on the other "
            f"workers (`dvc repro train` on worker 0 alone)")
    if gpus and not _wanted_gpus(train, gpus):
        tf.config.set_visible_devices([], "GPU")  # the strategy takes every visible GPU
    with awaiting_peers(config, train.peer_timeout_seconds):
        return tf.distribute.MultiWorkerMirroredStrategy()


STRATEGIES: dict[str, Callable[[TrainParams, list], tf.distribute.Strategy]] = {
    "one_device": _one_device,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
}


def select_strategy(train: TrainParams, gpus: list, batch_size: int) -> tf.distribute.Strategy:
    """The strategy `train.strategy` names; each replica must get an equal part of a batch."""
    strategy = STRATEGIES[train.strategy](train, gpus)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise PipelineError(f"params.yaml: batch_size: {batch_size} does not split evenly over "
                            f"{replicas} replicas ({train.strategy})")
    return strategy


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief (worker 0) writes outputs; every other process computes alongside it."""
    return not is_multi_worker(strategy) or strategy.cluster_resolver.task_id == 0


def describe(strategy: tf.distribute.Strategy) -> str:
    return f"{type(strategy).__name__} on {', '.join(strategy.extended.worker_devices)}"


def use_xla(jit_compile, model, strategy: tf.distribute.Strategy | None = None,
            device: str = "") -> tuple[bool, str]:
    """Whether to XLA-compile `model`'s work on the strategy's devices (or on `device`), and
    why, in words for the log: `train.jit_compile` auto compiles where the architecture
    compiles well (on a GPU every architecture; on a CPU the MLP, not convolutions)."""
    if jit_compile != "auto":
        return jit_compile, f"train.jit_compile: {str(jit_compile).lower()}"
    devices = strategy.extended.worker_devices if strategy is not None else [device]
    on_gpu = any("GPU" in name.upper() for name in devices)
    architecture = model.config["architecture"]
    if on_gpu or model.architecture.xla_on_cpu:
        return True, f"train.jit_compile: auto, {architecture} on a {'GPU' if on_gpu else 'CPU'}"
    return False, (f"train.jit_compile: auto, {architecture} on a CPU, where XLA's convolutions "
                   f"are slow; true forces it")


def evaluation_device(train: TrainParams, gpus: list) -> str:
    """Evaluation runs on one device: the GPU when training would use one, else the CPU."""
    return "/gpu:0" if _wanted_gpus(train, gpus) else "/cpu:0"
