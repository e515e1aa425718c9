"""Checkpoints and resume: a killed train stage, rerun, ends with the same bytes as one that was
never stopped; a checkpoint that does not fit the run is dropped with its reason."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from vaepipe.checkpoint import Checkpoints, Position
from vaepipe.devices import select_strategy, set_up_tensorflow
from vaepipe.training import build_trainer

from conftest import PROJECT_PARAMS, PROJECT_ROOT
from test_training import tiny_images, tiny_params

TRAIN_STAGE = PROJECT_ROOT / "stages" / "train.py"
CHECKPOINTS = Path(".checkpoints/train")  # the stage's, in its folder
OUTPUTS = ("models", "reports/train")
TINY = {"encoder_layers": [16], "decoder_layers": [16], "digit_classification_layers": [16],
        "z_dim": 2, "epochs": 3, "batch_size": 10, "learning_rate": 0.01}
# 600 images of 10: 60 steps, 30 chunks of 2 per epoch; a checkpoint after every chunk.
TINY_TRAIN = {"steps_per_execution": 2, "checkpoint_every": 1, "checkpoint_minutes": 0}
# Everything new that training depends on: pixel noise, the rate at epoch 2, the KL weight, the
# output biases a fresh start sets (and a resumed one takes from its checkpoint).
FAMILY = {"likelihood": "bernoulli", "conditioning": "none", "binarization": "dynamic",
          "learning_rate_schedule": "iwae", "kl_warmup_epochs": 2, "adam_epsilon": 1e-4,
          "output_bias_init": "data_mean"}


def make_project(root: Path, changes: dict | None = None,
                 train_changes: dict | None = None) -> Path:
    """A folder the train stage can run in: tiny params (with `changes`, and `train_changes` in
    its train group) and prepared data."""
    yaml = YAML()
    params = yaml.load(PROJECT_PARAMS.read_text())
    tiny = {**TINY, **(changes or {})}
    if tiny.get("conditioning") == "none":  # only the classifier reads its layers
        del tiny["digit_classification_layers"]
    params.update(tiny)
    params["train"].update({**TINY_TRAIN, **(train_changes or {})})
    root.mkdir()
    with open(root / "params.yaml", "w") as handle:
        yaml.dump(params, handle)
    (root / "data" / "prepared").mkdir(parents=True)
    for split, seed in (("train", 0), ("val", 1)):
        images, labels = tiny_images(n=600 if split == "train" else 50, seed=seed)
        np.savez_compressed(root / "data" / "prepared" / f"{split}.npz", images=images,
                            labels=labels)
    return root


def start_training(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TRAIN_STAGE)], cwd=root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def train_to_the_end(root: Path) -> str:
    process = start_training(root)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return stderr


def stop_training(root: Path, after_line: str, delay: float, stop_signal: int) -> str:
    """Start the stage, wait for a line starting with `after_line`, then `delay` seconds, then
    send `stop_signal`; what it printed."""
    process = start_training(root)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith(after_line):
                break
        time.sleep(delay)
        process.send_signal(stop_signal)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, "".join(lines) + rest
    return "".join(lines) + rest


# The train stage, SIGKILLed by itself just after it saves the checkpoint at Position(epochs
# done, chunks done) given as arguments: a kill at a known point, as any kill before the next
# save would leave it.
KILL_AFTER_SAVE = """
import os, runpy, signal, sys
stages, at = sys.argv[1], tuple(map(int, sys.argv[2:]))
sys.path.insert(0, stages)
import _environment  # the checkout's src first, as for the stage itself
from vaepipe.checkpoint import Checkpoints
save = Checkpoints.save

def save_then_die(self, model, optimizer, position, *rest):
    save(self, model, optimizer, position, *rest)
    if (position.epochs_done, position.chunks_done) == at:
        os.kill(os.getpid(), signal.SIGKILL)

Checkpoints.save = save_then_die
runpy.run_path(os.path.join(stages, "train.py"), run_name="__main__")
"""


def kill_after_checkpoint(root: Path, epochs_done: int, chunks_done: int = 0) -> str:
    """Run the stage until it has saved the checkpoint at that position, then SIGKILL it;
    what it printed."""
    process = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_SAVE, str(TRAIN_STAGE.parent), str(epochs_done),
         str(chunks_done)], cwd=root, capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    return process.stderr


def resumed_at(printed: str) -> list[str]:
    """The lines saying where a run resumed, and the epochs it then printed ("2/3", ...)."""
    lines = printed.splitlines()
    return ([line for line in lines if line.startswith("resuming at ")]
            + [line.split()[1] for line in lines if re.match(r"epoch \d+/\d+ ", line)])


def output_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for name in OUTPUTS
            for p in (root / name).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, bytes]:
    root = make_project(tmp_path_factory.mktemp("runs") / "uninterrupted")
    train_to_the_end(root)
    assert not (root / CHECKPOINTS).exists()
    return output_bytes(root)


def test_killed_mid_epoch_twice_then_resumed_gives_the_same_bytes(tmp_path, uninterrupted):
    root = make_project(tmp_path / "project")
    kill_after_checkpoint(root, 1, 5)  # 5 of epoch 2's 30 chunks done
    assert resumed_at(kill_after_checkpoint(root, 1, 20)) == [
        f"resuming at epoch 2 (chunk 6) from {CHECKPOINTS}"]
    printed = train_to_the_end(root)
    assert resumed_at(printed) == [
        f"resuming at epoch 2 (chunk 21) from {CHECKPOINTS}", "2/3", "3/3"]
    assert "replaying the order of the batches up to there first" in printed
    assert output_bytes(root) == uninterrupted
    assert not (root / CHECKPOINTS).exists()


def test_killed_after_an_epochs_last_chunk_then_at_its_end_resumes_to_the_same_bytes(
        tmp_path, uninterrupted):
    root = make_project(tmp_path / "project")
    kill_after_checkpoint(root, 1, 30)  # epoch 2 trained, not yet measured
    # The rerun trains nothing of epoch 2: it measures it, then is killed at its checkpoint.
    assert resumed_at(kill_after_checkpoint(root, 2)) == [
        f"resuming at epoch 2 (chunk 31) from {CHECKPOINTS}", "2/3"]
    assert resumed_at(train_to_the_end(root)) == [
        f"resuming at epoch 3 from {CHECKPOINTS}", "3/3"]
    assert output_bytes(root) == uninterrupted


def test_the_unconditional_bernoulli_family_resumes_to_the_same_bytes(tmp_path):
    once = make_project(tmp_path / "once", FAMILY)
    train_to_the_end(once)
    root = make_project(tmp_path / "project", FAMILY)
    kill_after_checkpoint(root, 1, 5)  # in epoch 2: warm-up under way, the schedule's 2nd rate
    assert resumed_at(train_to_the_end(root)) == [
        f"resuming at epoch 2 (chunk 6) from {CHECKPOINTS}", "2/3", "3/3"]
    assert output_bytes(root) == output_bytes(once)


def test_measure_every_2_killed_in_and_after_an_unmeasured_epoch_resumes_to_the_same_bytes(
        tmp_path):
    # 4 epochs, measured after epochs 2 and 4: epoch 3 logs no losses and draws no sample row.
    changes, train_changes = {"epochs": 4}, {"measure_every": 2}
    once = make_project(tmp_path / "once", changes, train_changes)
    train_to_the_end(once)
    root = make_project(tmp_path / "project", changes, train_changes)
    kill_after_checkpoint(root, 2, 10)  # 10 of epoch 3's 30 chunks done
    assert resumed_at(kill_after_checkpoint(root, 3)) == [
        f"resuming at epoch 3 (chunk 11) from {CHECKPOINTS}", "3/4"]
    assert resumed_at(train_to_the_end(root)) == [
        f"resuming at epoch 4 from {CHECKPOINTS}", "4/4"]
    assert output_bytes(root) == output_bytes(once)


def test_ctrl_c_saves_a_checkpoint_and_stops_quietly(tmp_path, uninterrupted):
    root = make_project(tmp_path / "project")
    printed = stop_training(root, "epoch 1/3", 0.0, signal.SIGINT)
    assert printed.endswith("interrupted: the previous outputs are left as they were\n")
    assert "Traceback" not in printed
    assert (root / CHECKPOINTS / "state.json").exists()
    assert "resuming at epoch 2" in train_to_the_end(root)
    assert output_bytes(root) == uninterrupted


# What does not fit: checked in-process on a saved checkpoint.

def saved_checkpoint(folder: Path, params, data_files) -> Checkpoints:
    set_up_tensorflow(params.seed)
    trainer = build_trainer(params, select_strategy(params.train, [], params.batch_size),
                            steps_per_epoch=1)
    live = folder.parent / "live"
    live.mkdir(exist_ok=True)
    checkpoints = Checkpoints(folder, params, data_files)
    checkpoints.save(trainer.model, trainer.optimizer, Position(2, 5), [np.zeros((10, 784))] * 2,
                     live)
    return checkpoints


def restore_with(params, folder: Path, data_files) -> Position:
    trainer = build_trainer(params, select_strategy(params.train, [], params.batch_size),
                            steps_per_epoch=1)
    live = folder.parent / "restored-live"
    return Checkpoints(folder, params, data_files).restore(trainer.model, trainer.optimizer,
                                                           live)[0]


@pytest.fixture
def data_files(tmp_path) -> list[Path]:
    files = [tmp_path / "train.npz", tmp_path / "val.npz"]
    for path in files:
        path.write_bytes(b"prepared data")
    return files


def test_the_same_run_resumes_where_the_checkpoint_says(tmp_path, data_files, capsys):
    params = tiny_params(z_dim=3)
    saved_checkpoint(tmp_path / "ckpt", params, data_files)
    assert restore_with(params, tmp_path / "ckpt", data_files) == Position(2, 5)
    assert "resuming at epoch 3 (chunk 6) from " in capsys.readouterr().err


@pytest.mark.parametrize("change, reason", [
    (lambda p, files: (tiny_params(z_dim=3, learning_rate=0.02), files),
     "was made with other params (learning_rate); removed it"),
    (lambda p, files: (tiny_params(z_dim=3, train=p.train.model_copy(
        update={"steps_per_execution": 4})), files),
     "was made with other params (train.steps_per_execution); removed it"),
    (lambda p, files: (p, files[:1] + [files[0]]), "was made with other prepared data"),
])
def test_a_checkpoint_of_another_run_starts_afresh_saying_why(tmp_path, data_files, capsys,
                                                              change, reason):
    params = tiny_params(z_dim=3)
    saved_checkpoint(tmp_path / "ckpt", params, data_files)
    capsys.readouterr()
    other_params, other_files = change(params, data_files)
    assert restore_with(other_params, tmp_path / "ckpt", other_files) == Position(0)
    assert f"starting afresh: the checkpoint in {tmp_path / 'ckpt'} {reason}" in \
        capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


def test_checkpoint_knobs_do_not_change_the_fingerprint(tmp_path, data_files):
    params = tiny_params(z_dim=3)
    saved_checkpoint(tmp_path / "ckpt", params, data_files)
    knobs = params.train.model_copy(update={"checkpoint_every": 7, "checkpoint_minutes": 1.5})
    assert restore_with(params.model_copy(update={"train": knobs}), tmp_path / "ckpt",
                        data_files) == Position(2, 5)


@pytest.mark.parametrize("damage", ["truncate", "garbage state", "missing samples"])
def test_a_corrupt_checkpoint_is_a_warning_and_a_fresh_start(tmp_path, data_files, capsys,
                                                             damage):
    params = tiny_params(z_dim=3)
    folder = tmp_path / "ckpt"
    saved_checkpoint(folder, params, data_files)
    capsys.readouterr()
    if damage == "truncate":
        variables = folder / "variables.npz"
        variables.write_bytes(variables.read_bytes()[:500])
    elif damage == "garbage state":
        (folder / "state.json").write_text("{not json")
    else:
        (folder / "samples.npy").unlink()
    assert restore_with(params, folder, data_files) == Position(0)
    # the one warning among the trainer's own lines (such as its XLA line)
    [line] = [line for line in capsys.readouterr().err.splitlines() if "checkpoint" in line]
    assert line.startswith(f"warning: the checkpoint in {folder} cannot be used (")
    assert line.endswith("); starting afresh")
    assert not folder.exists()


def test_resume_false_starts_afresh(tmp_path, data_files, capsys):
    params = tiny_params(z_dim=3)
    saved_checkpoint(tmp_path / "ckpt", params, data_files)
    capsys.readouterr()
    no_resume = params.model_copy(update={"train": params.train.model_copy(
        update={"resume": False})})
    assert restore_with(no_resume, tmp_path / "ckpt", data_files) == Position(0)
    assert "starting afresh: train.resume is false" in capsys.readouterr().err

