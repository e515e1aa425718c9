"""One line for what went wrong, also when TensorFlow's C++ runtime is what failed."""

import subprocess
import sys

from vaepipe.errors import describe_tensorflow_error
from vaepipe.tf_runtime import tf

# A stage whose work asks TensorFlow for 128 TiB: its C++ allocator fails.
IMPOSSIBLE_ALLOCATION = """
from vaepipe.errors import run_stage
from vaepipe.tf_runtime import tf
run_stage(lambda: tf.zeros([1 << 45]))
"""
OOM = ("OOM when allocating tensor with shape[35184372088832] and type float on "
       "/job:localhost/replica:0/task:0/device:CPU:0 by allocator mklcpu")


def test_a_failed_allocation_names_its_cause_in_the_last_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no TF_CPP_MIN_LOG_LEVEL
    result = subprocess.run([sys.executable, "-c", IMPOSSIBLE_ALLOCATION], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("error: TensorFlow: ResourceExhaustedError: OOM when "
                                "allocating tensor with shape[35184372088832] and type float")
    assert lines[-1].endswith(" [Op:Fill]; the previous outputs are left as they were")
    assert "Traceback" not in result.stderr
    # TensorFlow's own warning about it is shown, its start-up chatter is not. Its words depend
    # on the CPU's allocator: oneDNN's (mklcpu, on Intel CPUs) or the plain one (AMD's).
    assert any("ran out of memory trying to allocate 128.00TiB" in line
               or "Allocation of 140737488355328 exceeds 10% of free system memory" in line
               for line in lines[:-1])
    assert not any("cpu_feature_guard" in line or "cuInit" in line for line in lines)


def test_a_graph_error_is_described_by_its_cause_not_its_frames():
    message = ("Graph execution error:\n\nDetected at node zeros defined at (most recent call "
               "last):\n  File \"stages/train.py\", line 10, in <module>\n\n"
               f"{OOM}\n\t [[{{{{node zeros}}}}]]\nHint: If you want to see a list of allocated "
               "tensors when OOM happens, add report_tensor_allocations_upon_oom.\n"
               " [Op:__inference_f_13]")
    error = tf.errors.ResourceExhaustedError(None, None, message)
    assert describe_tensorflow_error(error) == f"TensorFlow: ResourceExhaustedError: {OOM}"
