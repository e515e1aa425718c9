from types import SimpleNamespace

import numpy as np
import pytest

from vaepipe import objectives, progress, training
from vaepipe.errors import PipelineError
from vaepipe.tf_runtime import tf
from vaepipe.params import load_params
from vaepipe.devices import select_strategy, set_up_tensorflow
from vaepipe.training import (Trainer, build_trainer, epoch_chunks, index_chunks,
                               learning_rate, train)

from conftest import PROJECT_PARAMS


def tiny_params(**changes):
    """The project's params with a tiny model. model_copy does not validate: a test may set
    what params.yaml would refuse."""
    params = load_params(PROJECT_PARAMS)
    tiny = dict(encoder_layers=(16,), decoder_layers=(16,), digit_classification_layers=(16,),
                z_dim=2, batch_size=10, learning_rate=0.01,
                train=params.train.model_copy(update={"steps_per_execution": 3}))
    return params.model_copy(update={**tiny, **changes})


def tiny_images(n=60, seed=0):
    """Two kinds of image (left half lit / right half lit) labelled 0 and 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        columns = slice(0, 14) if label == 0 else slice(14, 28)
        images[i, :, columns] = rng.integers(150, 256, (28, 14))
    return images, labels


def make_trainer(params, steps_per_epoch=6) -> Trainer:
    set_up_tensorflow(params.seed)
    return build_trainer(params, select_strategy(params.train, [], params.batch_size),
                         steps_per_epoch)


def train_epochs(params, images, labels, epochs, trainer=None):
    steps = len(images) // params.batch_size
    trainer = trainer or make_trainer(params, steps)
    chunks = epoch_chunks(images, labels, params, trainer.strategy)
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(chunks, steps, epoch)
    return trainer


def test_each_step_trains_on_its_own_batch_and_noise_though_they_are_drawn_a_step_early():
    # The compiled loop draws step i + 1's batch, pixel and latent noise beside step i's update;
    # the weights are those of plain steps, each drawing its inputs from Adam's step counter
    # just before its update. A draw one step off binarizes other pixels: far outside 1e-5.
    params = tiny_params(likelihood="bernoulli", binarization="dynamic", conditioning="none")
    images, labels = tiny_images()
    steps = len(images) // params.batch_size  # 6, in calls of 3
    looped = train_epochs(params, images, labels, epochs=2)
    plain = make_trainer(params, steps)
    chunks = epoch_chunks(images, labels, params, plain.strategy)
    step = tf.function(lambda images, labels, batch: plain._update(*plain._inputs(
        images, labels, batch, plain.optimizer.iterations)), jit_compile=True)
    for _ in range(2 * steps // params.train.steps_per_execution):
        split_images, split_labels, indices = next(chunks)
        for i in range(indices.shape[1]):
            step(split_images, split_labels, indices[:, i])
    assert int(plain.optimizer.iterations) == int(looped.optimizer.iterations) == 2 * steps
    for early, just_in_time in zip(looped.model.weights, plain.model.weights):
        np.testing.assert_allclose(early.numpy(), just_in_time.numpy(), rtol=1e-5, atol=1e-6)


def test_a_few_epochs_lower_both_losses():
    params = tiny_params()
    images, labels = tiny_images()
    trainer = make_trainer(params)
    before = trainer.measure(images, labels, 0)
    trained = train_epochs(params, images, labels, epochs=5)
    after = trained.measure(images, labels, 0)
    assert after["vae_loss"] < before["vae_loss"] - 10
    assert after["classifier_loss"] < before["classifier_loss"]
    assert after["accuracy"] == 1.0


def test_the_conv_architecture_learns_in_one_epoch():
    params = tiny_params(architecture="conv", conv_filters=(4, 8), activation="relu")
    images, labels = tiny_images()
    before = make_trainer(params).measure(images, labels, 0)
    after = train_epochs(params, images, labels, epochs=1).measure(images, labels, 0)
    assert after["vae_loss"] < before["vae_loss"] - 10
    assert after["accuracy"] == 1.0


def test_same_seed_same_weights_other_seed_other_weights():
    images, labels = tiny_images()
    first = train_epochs(tiny_params(), images, labels, epochs=2)
    second = train_epochs(tiny_params(), images, labels, epochs=2)
    other = train_epochs(tiny_params(seed=7), images, labels, epochs=2)
    for a, b in zip(first.model.weights, second.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(first.model.weights[0].numpy(), other.model.weights[0].numpy())


def test_optimizer_takes_one_step_per_batch():
    params = tiny_params()
    images, labels = tiny_images(n=65)  # 6 full batches of 10, in chunks of 3, rest dropped
    trainer = train_epochs(params, images, labels, epochs=2)
    assert int(trainer.optimizer.iterations.numpy()) == 12


def test_chunks_are_batch_first_and_cover_an_epoch_once():
    chunks = list(index_chunks(40, 10, 3, seed=0).take(2))
    assert [tuple(c.shape) for c in chunks] == [(10, 3), (10, 1)]
    indices = np.concatenate([np.ravel(tf.transpose(c)) for c in chunks])
    assert sorted(indices) == list(range(40))


def test_each_epoch_is_reshuffled_and_a_resumed_run_skips_to_the_same_chunks():
    set_up_tensorflow(0)
    first = [c.numpy() for c in index_chunks(40, 10, 3, seed=0).take(6)]
    set_up_tensorflow(0)
    resumed = [c.numpy() for c in index_chunks(40, 10, 3, seed=0, skip_chunks=3).take(3)]
    assert not np.array_equal(first[0], first[2])  # epoch 2 starts in another order
    for whole, skipped in zip(first[3:], resumed):
        np.testing.assert_array_equal(whole, skipped)


def test_the_split_is_resident_as_float_rows_beside_its_labels():
    images, labels = tiny_images(n=40)
    params = tiny_params()
    chunks = epoch_chunks(images, labels, params, make_trainer(params).strategy)
    split_images, split_labels, indices = next(chunks)
    np.testing.assert_array_equal(split_images.numpy(), images.reshape(40, 784) / np.float32(255))
    np.testing.assert_array_equal(split_labels.numpy(), labels)
    assert indices.shape == (10, 3)


def test_batch_larger_than_the_data_is_a_param_error():
    with pytest.raises(PipelineError, match=r"params.yaml: batch_size: 10 is more than the 5"):
        index_chunks(5, 10, 3, seed=0)


def write_prepared(folder, images, labels):
    folder.mkdir(parents=True)
    for split in ("train", "val"):
        np.savez_compressed(folder / f"{split}.npz", images=images, labels=labels)


def test_a_diverging_run_stops_in_one_line_and_writes_nothing(tmp_path):
    images, labels = tiny_images()
    write_prepared(tmp_path / "prepared", images, labels)
    old = {"model/config.json": b"old model", "samples.npy": b"old samples",
           "live/metrics.json": b"old metrics"}
    for name, content in old.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(content)
    params = tiny_params(learning_rate=1e6, epochs=3)
    with pytest.raises(PipelineError, match=(
            r"^training diverged at epoch 1, step \d+ of 6: the [a-zA-Z -]+ term became "
            r"non-finite \(nan or inf\); nothing was written. Try a lower learning_rate "
            r"\(now 1e\+06\)$")):
        train(params, tmp_path / "prepared", tmp_path / "model", tmp_path / "samples.npy",
              tmp_path / "live", tmp_path / "checkpoint")
    written = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*")
               if p.is_file() and "prepared" not in p.parts}
    assert written == old


def test_the_iwae_schedule_holds_each_rate_for_3_to_the_i_epochs():
    params = tiny_params(learning_rate=0.001, learning_rate_schedule="iwae", epochs=3280)
    schedule = learning_rate(params, steps_per_epoch=5)
    stage_ends = [1, 4, 13, 40, 121, 364, 1093]  # epochs, cumulative 3^i
    assert float(schedule(0)) == pytest.approx(0.001)
    for i, end in enumerate(stage_ends):
        assert float(schedule(end * 5 - 1)) == pytest.approx(0.001 * 10 ** (-i / 7))
        assert float(schedule(end * 5)) == pytest.approx(0.001 * 10 ** (-(i + 1) / 7))
    assert float(schedule(3280 * 5)) == pytest.approx(0.0001)
    assert learning_rate(tiny_params(), 5) == 0.01  # constant: the number itself


def recorded_kl_weights(params, epochs, monkeypatch) -> np.ndarray:
    """The weight each training step's loss gave the KL term, indexed by Adam's step: the
    weighted KL the objective added to the reconstruction over the KL itself."""
    images, labels = tiny_images()
    steps = len(images) // params.batch_size
    trainer = make_trainer(params, steps)
    weights = tf.Variable(tf.fill([epochs * steps], np.nan))

    def recording_weighted(kl, kl_scale, weighted=objectives._weighted):
        kl_term = weighted(kl, kl_scale)
        # At Adam's step: a whole-vector update, as XLA takes no slice at a variable index.
        at_step = tf.range(epochs * steps) == tf.cast(trainer.optimizer.iterations, tf.int32)
        weights.assign(tf.where(at_step, tf.reduce_sum(kl_term) / tf.reduce_sum(kl), weights))
        return kl_term

    monkeypatch.setattr(objectives, "_weighted", recording_weighted)
    train_epochs(params, images, labels, epochs, trainer)
    return weights.numpy()


@pytest.mark.parametrize("warmup_epochs, kl_weight", [(2, 1.0), (0, 1.0), (2, 0.25), (0, 4.0)])
def test_each_steps_loss_weighs_kl_by_kl_weight_times_min_1_step_over_the_warmup_steps(
        monkeypatch, warmup_epochs, kl_weight):
    # 6 steps an epoch, 3 a compiled call, over 3 epochs: the weight rises, reaches kl_weight
    # at step 12 and stays there; without warm-up the KL has its whole weight from step 0.
    params = tiny_params(kl_warmup_epochs=warmup_epochs, kl_weight=kl_weight)
    weights = recorded_kl_weights(params, 3, monkeypatch)
    step = np.arange(18)
    expected = np.minimum(1, step / (warmup_epochs * 6)) if warmup_epochs else np.ones(18)
    np.testing.assert_allclose(weights, kl_weight * expected, rtol=1e-5, atol=1e-7)


def test_adams_first_step_uses_the_params_epsilon_and_betas():
    one_step_a_call = tiny_params().train.model_copy(update={"steps_per_execution": 1})
    params = tiny_params(adam_epsilon=1e-4, adam_beta_1=0.99, adam_beta_2=0.995,
                         train=one_step_a_call)
    images, labels = tiny_images()
    trainer = make_trainer(params)
    optimizer, weights = trainer.optimizer, trainer.model.trainable_variables
    assert (optimizer.epsilon, optimizer.beta_1, optimizer.beta_2) == (1e-4, 0.99, 0.995)
    before = [weight.numpy().astype(np.float64) for weight in weights]
    trainer.train_steps(*next(epoch_chunks(images, labels, params, trainer.strategy)))
    # After Adam's first step, with gradient g: m = (1 - beta_1) g, v = (1 - beta_2) g^2, and
    # each weight moved by lr sqrt(1 - beta_2) / (1 - beta_1) m / (sqrt(v) + epsilon).
    alpha = 0.01 * np.sqrt(1 - 0.995) / (1 - 0.99)
    for weight, old in zip(weights, before):  # m and v: Keras 3 Adam's slot variables
        index = optimizer._get_variable_index(weight)
        m, v = (slots[index].numpy().astype(np.float64)
                for slots in (optimizer._momentums, optimizer._velocities))
        np.testing.assert_allclose(v, (1 - 0.995) / (1 - 0.99) ** 2 * m**2, rtol=1e-4,
                                   atol=1e-12)
        np.testing.assert_allclose(weight.numpy(), old - alpha * m / (np.sqrt(v) + 1e-4),
                                   rtol=1e-6, atol=1e-7)


def test_the_unconditional_bernoulli_family_trains_the_same_twice_and_learns():
    params = tiny_params(likelihood="bernoulli", conditioning="none", binarization="dynamic")
    images, labels = tiny_images()
    first, second = (train_epochs(params, images, labels, 3) for _ in range(2))
    assert first.model.classifier_net is None
    for a, b in zip(first.model.weights, second.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    before = make_trainer(params).measure(images, labels, 0)
    after = first.measure(images, labels, 0)
    assert set(after) == {"vae_loss"}
    assert after["vae_loss"] < before["vae_loss"]


def test_measure_every_logs_the_measured_epochs_and_one_sample_row_each(tmp_path):
    images, labels = tiny_images()
    write_prepared(tmp_path / "prepared", images, labels)
    params = tiny_params(epochs=5, train=tiny_params().train.model_copy(
        update={"steps_per_execution": 3, "measure_every": 2}))
    assert [params.is_measured(epoch) for epoch in range(1, 6)] == [False, True, False, True,
                                                                     True]
    train(params, tmp_path / "prepared", tmp_path / "model", tmp_path / "samples.npy",
          tmp_path / "live", None)
    logged = (tmp_path / "live" / "plots" / "metrics" / "val" / "vae_loss.tsv").read_text()
    assert [line.split("\t")[0] for line in logged.splitlines()[1:]] == ["1", "3", "4"]
    assert np.load(tmp_path / "samples.npy").shape == (3, 10, 784)


def test_an_epoch_in_a_log_shows_its_steps_once_a_compiled_call(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_SECONDS", 0)  # as if every call took a minute
    images, labels = tiny_images()
    write_prepared(tmp_path / "prepared", images, labels)
    train(tiny_params(epochs=1), tmp_path / "prepared", tmp_path / "model",
          tmp_path / "samples.npy", tmp_path / "live", None)
    lines = capsys.readouterr().err.splitlines()
    # 6 steps, 3 a call: the line of the first call, then the epoch's own
    [in_epoch] = [line for line in lines if line.startswith("epoch 1: ")]
    assert in_epoch.startswith("epoch 1:  50%|") and "| 3/6 [" in in_epoch
    assert in_epoch.endswith(("step/s]", "s/step]"))  # the rate
    assert lines[-1].startswith("epoch 1/1  vae loss")


def test_each_epoch_line_says_how_long_the_epochs_to_come_take(tmp_path, capsys, monkeypatch):
    ticks = iter(range(0, 10_000, 30))  # a clock that moves 30 s each time it is read
    monkeypatch.setattr(training, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    images, labels = tiny_images()
    write_prepared(tmp_path / "prepared", images, labels)
    train(tiny_params(epochs=4), tmp_path / "prepared", tmp_path / "model",
          tmp_path / "samples.npy", tmp_path / "live", None)
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("epoch ") and "/4" in line]
    # Each epoch reads the clock at its start and end: 30 s an epoch in the line. The time left
    # is the first epoch's 30 s times 3 epochs to come, then paced from the first epoch's end
    # (which leaves its compilation out): 60 s an epoch, times 2, then times 1.
    assert [line.split("  ")[-2:] for line in lines[:3]] == [
        [" 30.0s", "90 seconds left"], [" 30.0s", "2 minutes left"],
        [" 30.0s", "60 seconds left"]]
    assert lines[3].endswith(" 30.0s") and "vae loss" in lines[3]  # the last: nothing to come
