"""Where one compiled call of training steps spends its time, by kind of work.

    .venv/bin/python benchmarks/profile_chunk.py [--recipe NAME] [-S KEY=VALUE ...]

Builds the train stage's `Trainer` for params.yaml's model (or a reproduction's, `--recipe`,
and any `-S` param, as train_speed.py takes them), trains one epoch to compile and warm up,
then runs one more call of `train.steps_per_execution` steps under TensorFlow's profiler, with
XLA's optimized program dumped beside it. Each compiled operation the profiler timed is put in
a kind by what XLA says it came from (its TensorFlow op and name scope), and the thread time of
every kind is printed, with how busy the threads were over the call's wall time. The numbers
come from one call, so they vary by a few percent from run to run; the shares are what count.
"""

import argparse
import collections
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

DUMP = Path(tempfile.mkdtemp(prefix="vaepipe-xla-dump-"))
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={DUMP}".strip()

# imported once XLA_FLAGS is set
from train_speed import add_param_options, checked_params, project_trainer  # noqa: E402

# A computation's header, and an instruction: name = shape opcode(operands), ...
COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")
INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%?([\w.\-]+) = (\S+) ([a-z][\w\-]*)\(")
CALLS = re.compile(r"calls=%?([\w.\-]+)")
ORIGIN = re.compile(r'op_type="(\w*)" op_name="([^"]*)"')
KINDS = ("matrix products", "random numbers", "Adam's update", "gathers", "element-wise",
         "copies", "other")
CONTAINERS = ("while", "call", "conditional")  # their time is that of what they run


def kind_of(opcode: str, op_type: str, op_name: str) -> str | None:
    """The kind of work of one operation, from its HLO opcode and TensorFlow origin (None when
    it says nothing: a parameter, a constant, a tuple)."""
    scope = op_name.lower()
    if opcode in ("dot", "convolution") or op_type in ("MatMul", "BatchMatMulV2", "Conv2D"):
        return "matrix products"
    if "random" in scope or op_type.startswith("StatelessRandom") or opcode == "rng-bit-generator":
        return "random numbers"
    if "adam" in scope:
        return "Adam's update"
    if opcode == "gather" or op_type in ("GatherV2", "ResourceGather"):
        return "gathers"
    if opcode == "copy":
        return "copies"
    return "element-wise" if op_name else None


def compiled_operations() -> dict[str, str]:
    """Each operation of the dumped optimized programs that runs as a thunk: name -> kind. A
    fusion takes the first kind, in KINDS' order, of the operations fused into it."""
    found, computations, computation = [], collections.defaultdict(list), None
    for path in DUMP.glob("*after_optimizations.txt"):
        for line in path.read_text().splitlines():
            if header := COMPUTATION.match(line):
                computation = header.group(1)
            elif instruction := INSTRUCTION.match(line):
                name, shape, opcode = instruction.groups()
                origin = ORIGIN.search(line)
                kind = kind_of(opcode, *(origin.groups() if origin else ("", "")))
                called = CALLS.search(line)
                found.append((name, shape, opcode, kind, called and called.group(1)))
                computations[computation].append(kind)
    kinds = {}
    for name, shape, opcode, kind, called in found:
        if opcode in CONTAINERS:
            continue
        if called:
            inner = [k for k in computations[called] if k is not None]
            # XLA expands the Philox generator into integer operations without a TensorFlow
            # origin: a fusion of those makes random bits.
            kind = (min(inner, key=KINDS.index) if inner else
                    "random numbers" if shape.startswith("u") else "other")
        kinds[name] = kind or "other"
    return kinds


def thread_times(trace_dir: Path, kinds: dict[str, str]) -> collections.Counter:
    """Milliseconds of thread time per kind of the compiled operations in the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    space.ParseFromString(next(trace_dir.rglob("*.xplane.pb")).read_bytes())
    host = next(plane for plane in space.planes if plane.name == "/host:CPU")
    totals = collections.Counter()
    for line in host.lines:
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name
            if name in kinds:
                totals[kinds[name]] += event.duration_ps / 1e9
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_param_options(parser)
    args = parser.parse_args()
    try:
        profile(checked_params(args))
    finally:
        shutil.rmtree(DUMP, ignore_errors=True)


def profile(params) -> None:
    from vaepipe.devices import use_xla
    from vaepipe.tf_runtime import tf
    trainer, chunks, steps = project_trainer(params)
    if not use_xla(params.train.jit_compile, trainer.model, trainer.strategy)[0]:
        sys.exit("error: the train steps of this model are not XLA-compiled (train.jit_compile); "
                 "the profile reads XLA's program")
    trainer.train_epoch(chunks, steps, 1)
    per_call = params.train.steps_per_execution
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        started = time.perf_counter()
        trainer.train_epoch(chunks, per_call, 2)
        wall_ms = (time.perf_counter() - started) * 1000
        tf.profiler.experimental.stop()
        totals = thread_times(Path(trace_dir), compiled_operations())
    busy, cores = sum(totals.values()), len(os.sched_getaffinity(0))
    print(f"one call of {per_call} steps: {wall_ms:.0f} ms of wall time (with the profiler); "
          f"the compiled operations kept the {cores} cores busy {busy / (cores * wall_ms):.0%} "
          f"of it")
    print(f"{'kind of work':<18}{'thread ms':>10}{'share':>8}{'ms a step':>11}")
    for kind in KINDS:
        print(f"{kind:<18}{totals[kind]:10.1f}{totals[kind] / busy:8.0%}"
              f"{totals[kind] / per_call:11.3f}")


if __name__ == "__main__":
    main()
