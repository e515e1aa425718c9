"""Training: device choice, determinism, the compiled training loop and per-epoch logging.

Python dispatch per train step costs more than the step itself on a CPU, so one compiled call
runs `steps_per_execution` steps (the name Keras uses for the same idea) in a loop inside XLA.
"""

import io
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from dvclive import Live

from vaepipe import family
from vaepipe.checkpoint import Checkpoints, Position
from vaepipe.data import load_split
from vaepipe.devices import (describe, is_chief, is_multi_worker, select_strategy,
                             set_up_tensorflow, use_xla)
from vaepipe.errors import PipelineError
from vaepipe.files import staged_outputs
from vaepipe.model import VAE, save_model, to_float_images
from vaepipe.params import IWAE_SCHEDULE_STAGES, Params
from vaepipe.progress import WorkBar, duration, progress_bar
from vaepipe.tf_runtime import keras, tf

METRICS_BATCH = 2000  # images per call when measuring losses over a whole split


class Diverged(PipelineError):
    """Training produced a non-finite number: nothing it made may replace the last results."""

    def __init__(self, where: str, what: str, params: Params):
        super().__init__(f"training diverged at {where}: {what} became non-finite (nan or inf); "
                         f"nothing was written. Try a lower learning_rate (now "
                         f"{params.learning_rate:g})")


def index_chunks(n_images: int, batch_size: int, steps_per_execution: int, seed: int,
                 skip_chunks: int = 0) -> tf.data.Dataset:
    """Every epoch's shuffled batches of training-image indices, grouped `steps_per_execution`
    at a time, reshuffled each epoch, endlessly; the first `skip_chunks` chunks are left out (a
    resumed run's).

    Elements are (batch, steps), batch first, so that a MirroredStrategy splits each batch
    across replicas rather than handing each replica different steps. The order is a function
    of the seed alone.
    """
    if n_images < batch_size:
        raise PipelineError(f"params.yaml: batch_size: {batch_size} is more than the "
                            f"{n_images} training images")
    return (tf.data.Dataset.range(n_images)
            .shuffle(n_images, seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size, drop_remainder=True)  # the article's loop drops the rest too
            .batch(steps_per_execution)
            .repeat()
            .skip(skip_chunks)
            .map(_batch_major)
            .prefetch(1))


def _batch_major(chunk):
    """A chunk's (steps, batch) indices as (batch, steps), by a gather: oneDNN's transpose has
    no integer kernel on CPUs and logs an error each time it falls back."""
    steps, batch = tf.unstack(tf.shape(chunk, out_type=tf.int64))
    flat_positions = tf.range(batch)[:, None] + tf.range(steps)[None, :] * batch
    return tf.gather(tf.reshape(chunk, [-1]), flat_positions)


def chunks_per_epoch(steps_per_epoch: int, params: Params) -> int:
    return -(-steps_per_epoch // params.train.steps_per_execution)


@dataclass
class Chunks:
    """The training split, resident on the training devices, and an endless iterator over
    every epoch's chunks of batch indices. Each compiled call gathers its batches itself: an
    input pipeline that gathers images beside the training steps competes with them for the
    same cores."""

    images: tf.Variable  # (n, 784) float32
    labels: tf.Variable  # (n,) int32
    indices: Iterator  # (batch, steps) per chunk

    def __iter__(self):
        return self

    def __next__(self) -> tuple:
        """The arguments of one compiled call: the split and the chunk's indices."""
        return self.images, self.labels, next(self.indices)


def epoch_chunks(images: np.ndarray, labels: np.ndarray, params: Params,
                 strategy: tf.distribute.Strategy, skip_chunks: int = 0) -> Chunks:
    """The split made resident and every epoch's chunks, from chunk `skip_chunks` on.

    One iterator serves every epoch: a fresh one per epoch sometimes blocks for half a second
    when the old one is deleted.
    """
    def dataset():
        return index_chunks(len(images), params.batch_size, params.train.steps_per_execution,
                            params.seed, skip_chunks)

    with strategy.scope():  # one copy per replica
        resident = (tf.Variable(to_float_images(images), trainable=False),
                    tf.Variable(labels.astype(np.int32), trainable=False))
    return Chunks(*resident, iter(replication(strategy).distribute(dataset, params.batch_size)))


class OneReplica:
    """One device: a chunk's whole step loop runs inside the replica, as one compiled call
    (XLA, when chosen)."""

    steps_take_xla = True

    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy

    def distribute(self, dataset, batch_size: int):
        return dataset()  # one device needs no split, and distributing costs 0.4 s an epoch

    def replica_id(self):
        return None  # the noise stays that of a plain single-device run

    def run_chunk(self, step_loop, inputs, update, images, labels, indices):
        """`step_loop(steps, inputs_at, update)` over the chunk inside the replica, step i's
        inputs being `inputs(images, labels, indices, i)` and `update(*inputs)` its Adam step
        (which says which loss terms were not finite)."""
        return self.strategy.run(
            lambda *chunk: step_loop(tf.shape(chunk[2])[1], lambda i: inputs(*chunk, i), update),
            (images, labels, indices))


class Replicas(OneReplica):
    """Several replicas merge their gradients through tf.distribute's cross-replica sum, which
    may be neither inside a loop in a replica's code nor XLA-compiled: the loop runs around
    the replicas' steps, as a plain graph."""

    steps_take_xla = False

    def distribute(self, dataset, batch_size: int):
        return self.strategy.experimental_distribute_dataset(dataset())  # a slice of each batch

    def replica_id(self):
        return tf.distribute.get_replica_context().replica_id_in_sync_group

    def run_chunk(self, step_loop, inputs, update, images, labels, indices):
        """The same, each step's inputs drawn in the replicas beside its update: values of
        several replicas cannot be carried from one step to the next."""
        def on_every_replica(i):
            not_finite = self.strategy.run(
                lambda *args: tf.cast(update(*inputs(*args)), tf.int32),
                (images, labels, indices, i))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, not_finite, axis=None) > 0
        local = self.strategy.experimental_local_results(indices)[0]
        return step_loop(tf.shape(local)[1], lambda i: (i,), on_every_replica)


def workers_slices(chunks: tf.data.Dataset, batch_size: int,
                   context: tf.distribute.InputContext) -> tf.data.Dataset:
    """A worker's part of every chunk of (batch, steps) indices: one slice of each batch per
    local replica, in the order of their replica ids, one element each (tf.distribute hands a
    worker's elements to its local replicas in turn). Together the workers' slices are the
    whole batch, each replica's the part its global id names."""
    part = batch_size // context.num_replicas_in_sync
    local = context.num_replicas_in_sync // context.num_input_pipelines
    first = context.input_pipeline_id * local
    return chunks.map(lambda indices: tf.stack(
        [indices[(first + r) * part:(first + r + 1) * part] for r in range(local)])).unbatch()


class Workers(Replicas):
    """Replicas in several worker processes: every worker reads the same chunks (same seed)
    and keeps its replicas' slices of each batch, so the global batch stays `batch_size`,
    split as one device would see it."""

    def distribute(self, dataset, batch_size: int):
        return self.strategy.distribute_datasets_from_function(
            lambda context: workers_slices(dataset(), batch_size, context))


def replication(strategy: tf.distribute.Strategy) -> OneReplica:
    """How `strategy` splits the work: the one place that tells one replica from several."""
    if is_multi_worker(strategy):
        return Workers(strategy)
    return Replicas(strategy) if strategy.num_replicas_in_sync > 1 else OneReplica(strategy)


def learning_rate(params: Params, steps_per_epoch: int):
    """Adam's learning rate: a number, or a function of Adam's step (so a resumed run has it)."""
    if params.learning_rate_schedule == "constant":
        return params.learning_rate
    # The IWAE paper: stage i lasts 3^i epochs at learning_rate x 10^(-i/7). Adam's step k is
    # the (k+1)-th, and a boundary b still takes the rate before it: a stage ending after
    # epoch e has its last step at b = e x steps_per_epoch - 1.
    stage_ends = np.cumsum([3**i for i in range(IWAE_SCHEDULE_STAGES)])[:-1]
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(end) * steps_per_epoch - 1 for end in stage_ends],
        [params.learning_rate * 10 ** (-i / 7) for i in range(IWAE_SCHEDULE_STAGES)])


def build_trainer(params: Params, strategy: tf.distribute.Strategy,
                  steps_per_epoch: int) -> "Trainer":
    """A fresh model and Adam optimizer, their variables placed by `strategy` and created now,
    so that a checkpoint can be loaded into them."""
    with strategy.scope():
        model = VAE(**params.network_config())
        optimizer = keras.optimizers.Adam(learning_rate(params, steps_per_epoch),
                                          beta_1=params.adam_beta_1, beta_2=params.adam_beta_2,
                                          epsilon=params.adam_epsilon)
        optimizer.build(model.trainable_variables)
        return Trainer(model, optimizer, params, strategy, steps_per_epoch)


@dataclass
class Trainer:
    """The model, its optimizer and the compiled functions that train and measure it."""

    model: VAE
    optimizer: keras.optimizers.Optimizer
    params: Params
    strategy: tf.distribute.Strategy
    steps_per_epoch: int

    def __post_init__(self):
        self.binarization = family.build("binarization", self.params)
        self.objective = family.build("objective", self.params)
        self.loss_terms = self.model.conditioning.loss_terms
        self.replication = replication(self.strategy)
        xla, why = use_xla(self.params.train.jit_compile, self.model, self.strategy)
        steps_xla = xla and self.replication.steps_take_xla
        print(f"XLA: {'on' if xla else 'off'} ({why})" if steps_xla == xla else
              f"XLA: off for the train steps ({self.strategy.num_replicas_in_sync} replicas "
              f"merge their gradients outside it), on for measurement ({why})", file=sys.stderr)
        self.train_steps = tf.function(self._train_steps, jit_compile=steps_xla)
        self.per_image_losses = tf.function(self._per_image_losses, jit_compile=xla)

    def _noise_seed(self, counter, replica=None):
        """The stateless seed of a step's noise, a pure function of (seed, counter) and, when
        several replicas train, the replica's id: same run, same noise; each replica its own."""
        seed = tf.stack([tf.constant(self.params.seed, tf.int64), tf.cast(counter, tf.int64)])
        if replica is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, replica)
        return seed

    def _eps(self, rows, seed):
        """Reparameterisation noise for `rows` samples, from a `_noise_seed`."""
        return tf.random.stateless_normal([rows, self.model.noise_dim], seed=seed)

    def _kl_scale(self, step):
        """The KL term's weight at Adam's `step`: kl_weight, times a warm-up that rises
        linearly from 0 to 1 over kl_warmup_epochs; None when it is 1 throughout, so that the
        article's loss stays op for op."""
        scale = None
        if self.params.kl_warmup_epochs:
            warmup_steps = self.params.kl_warmup_epochs * self.steps_per_epoch
            scale = tf.minimum(1.0, tf.cast(step, tf.float32) / warmup_steps)
        if self.params.kl_weight != 1:
            scale = self.params.kl_weight * (1.0 if scale is None else scale)
        return scale

    def _inputs(self, images, labels, batch, counter):
        """A step's inputs on this replica: its part of the batch (the split's rows at
        `batch`), binarized, its labels and its latent noise, all from the stateless seed of
        Adam's step `counter`. Nothing here reads the weights."""
        seed = self._noise_seed(counter, self.replication.replica_id())
        x = self.binarization.batch(tf.gather(images, batch), seed)
        eps = self._eps(tf.shape(x)[0] * self.objective.samples, seed)
        return x, tf.gather(labels, batch), eps

    def _update(self, x, y, eps):
        """One Adam step on a step's `_inputs`; which loss terms were not finite."""
        weights = self.model.trainable_variables
        with tf.GradientTape() as tape:
            vae_loss, watched, logits = self.objective.per_image(
                self.model, x, eps, self._kl_scale(self.optimizer.iterations))
            loss, more_terms = self.model.conditioning.training_loss(
                vae_loss, logits, y, self.params.digit_classification_weight)
            terms = [*watched, *more_terms]
            # Replicas' gradients are summed: each contributes its share of the mean.
            loss /= self.strategy.num_replicas_in_sync
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return tf.logical_not(tf.stack([tf.reduce_all(tf.math.is_finite(term))
                                        for term in terms]))

    def _step_loop(self, steps, inputs_at, update):
        """`update(*inputs_at(i))` for each step i of a chunk; the first step whose loss terms
        were not all finite (-1 if none) and which terms those were, so that a diverging run
        stops at the chunk where it went wrong.

        Step i + 1's inputs are drawn in the iteration that updates step i: they read no
        weights, so XLA runs them on a core that the update leaves idle (the same numbers, an
        epoch of the IWAE paper's model 14% shorter; benchmarks/README.md)."""
        first_bad_step, bad_terms = tf.constant(-1), tf.zeros([len(self.loss_terms)], tf.bool)
        inputs = inputs_at(0)
        for step in tf.range(steps):
            next_inputs = inputs_at(tf.minimum(step + 1, steps - 1))  # the last goes unused
            not_finite = update(*inputs)
            inputs = next_inputs
            first = tf.logical_and(first_bad_step < 0, tf.reduce_any(not_finite))
            first_bad_step = tf.where(first, step, first_bad_step)
            bad_terms = tf.where(first, not_finite, bad_terms)
        return first_bad_step, bad_terms

    def _train_steps(self, images, labels, indices):
        """One Adam step per batch of the chunk: the split's images (n, 784) and labels at
        `indices` (batch, steps)."""
        first_step = tf.cast(self.optimizer.iterations, tf.int64)

        def inputs(images, labels, indices, i):
            return self._inputs(images, labels, indices[:, i], first_step + tf.cast(i, tf.int64))
        return self.replication.run_chunk(self._step_loop, inputs, self._update, images, labels,
                                          indices)

    def _per_image_losses(self, x, labels, counter):
        reconstruction, kl, logits = self.model(x, self._eps(tf.shape(x)[0],
                                                             self._noise_seed(counter)))
        return self.model.conditioning.per_image_measures(reconstruction + kl, logits, labels)

    def train_epoch(self, chunks: Chunks, steps: int, epoch: int, start_chunk: int = 0,
                    after_chunk=None, bar: WorkBar | None = None) -> None:
        """Run one epoch of `steps` train steps, one compiled call per chunk, from chunk
        `start_chunk` on; stop at the first chunk in which a loss term went non-finite.
        `after_chunk(chunks_done)` runs after each chunk (checkpoints, Ctrl-C); `bar` counts
        the steps, once a compiled call."""
        per_call = self.params.train.steps_per_execution
        for chunk, done in enumerate(range(0, steps, per_call)):
            if chunk < start_chunk:
                continue
            first_bad_step, bad_terms = self.train_steps(*next(chunks))
            local = self.strategy.experimental_local_results  # one value per replica
            for replica_step, replica_terms in zip(local(first_bad_step), local(bad_terms)):
                if replica_step >= 0:
                    terms = [term for term, bad in zip(self.loss_terms, replica_terms) if bad]
                    raise Diverged(f"epoch {epoch}, step {done + int(replica_step) + 1} of "
                                   f"{steps}", f"the {' and '.join(terms)} term"
                                   f"{'s' if len(terms) > 1 else ''}", self.params)
            if bar is not None:
                bar.update(min(per_call, steps - done))
            if after_chunk is not None:
                after_chunk(chunk + 1)

    def measure(self, images: np.ndarray, labels: np.ndarray, counter: int) -> dict:
        """The conditioning's `split_metrics` over a whole split: the article's two losses and
        the accuracy, or the VAE loss alone.

        XLA on a CPU sums big float32 tensors loosely, so per-image values come back and are
        averaged in float64 here.
        """
        conditioning = self.model.conditioning
        columns = [[] for _ in conditioning.split_metrics]
        for start in range(0, len(images), METRICS_BATCH):
            x = to_float_images(images[start:start + METRICS_BATCH])
            y = labels[start:start + METRICS_BATCH].astype(np.int32)
            results = self.per_image_losses(x, y, tf.constant(counter + start, tf.int64))
            for values, out in zip(results, columns):
                out.append(values.numpy())
        return conditioning.split_measures([np.concatenate(column) for column in columns],
                                           self.params.digit_classification_weight)


def format_epoch(epoch: int, epochs: int, train: dict | None, val: dict | None,
                 seconds: float, left: float) -> str:
    """One line per epoch; the losses when it was measured (see train.measure_every), and the
    time the epochs still to come will take, `left` seconds, while there are any."""
    losses = ""
    if train is not None:
        classifier = (f"classifier loss {train['classifier_loss']:6.3f} "
                      f"(val {val['classifier_loss']:6.3f})  val accuracy {val['accuracy']:.4f}  "
                      if "accuracy" in val else "")
        losses = (f"vae loss {train['vae_loss']:8.2f} (val {val['vae_loss']:8.2f})  "
                  f"{classifier}")
    to_come = f"  {duration(left)} left" if epoch < epochs else ""
    return f"epoch {epoch:>{len(str(epochs))}}/{epochs}  {losses}{seconds:5.1f}s{to_come}"


def time_left(elapsed: float, epochs_run: int, epochs_to_go: int) -> float:
    """The seconds `epochs_to_go` more epochs take at the mean pace of `epochs_run` epochs that
    took `elapsed` seconds (measured epochs among them, so that their cost is spread out)."""
    return elapsed / epochs_run * epochs_to_go


class CtrlC:
    """Ctrl-C while training: finish the chunk under way, save a checkpoint, then stop. A second
    Ctrl-C stops at once."""

    def __enter__(self):
        self.pressed = False
        self.previous = signal.signal(signal.SIGINT, self._press)
        return self

    def _press(self, signum, frame):
        self.pressed = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc_info):
        signal.signal(signal.SIGINT, self.previous)


def run_epochs(trainer: Trainer, train_split, val_split, live: Live, live_dir: Path,
               checkpoints: Checkpoints, start: Position,
               samples: list[np.ndarray]) -> np.ndarray:
    """Train from `start` to the configured epochs, logging each; return the sample rows
    (epochs, 10, 784)."""
    params = trainer.params
    steps_per_epoch = trainer.steps_per_epoch
    chunks_done = start.epochs_done * chunks_per_epoch(steps_per_epoch, params) + start.chunks_done
    if chunks_done:  # about 0.08 s an epoch of 60000 images: minutes after thousands of epochs
        print("replaying the order of the batches up to there first: tf.data shuffles each "
              "epoch done again", file=sys.stderr, flush=True)
    chunks = epoch_chunks(train_split.images, train_split.labels, params, trainer.strategy,
                          chunks_done)
    # Each measured epoch's row of ten samples (10, 784), after the rows already drawn.
    rows = trainer.model.conditioning.sample_rows(trainer.model, params.seed,
                                                  params.measured_epochs(start.epochs_done))
    # Losses are measured on one fixed binarization of each split (when binarized).
    measured = {split: (trainer.binarization.split(data.images, split), data.labels)
                for split, data in (("train", train_split), ("val", val_split))}

    def checkpoint_if_due(position: Position, ctrl_c: CtrlC) -> None:
        if checkpoints.due(position, params.epochs) or ctrl_c.pressed:
            checkpoints.save(trainer.model, trainer.optimizer, position, samples, live_dir)
        if ctrl_c.pressed:
            raise KeyboardInterrupt

    paced_from = None  # (time, epochs done) at the end of this sitting's first epoch, which
    # also compiles the step: the time left is paced from there
    with CtrlC() as ctrl_c:
        for epoch in range(start.epochs_done + 1, params.epochs + 1):
            started = time.perf_counter()
            first_chunk = start.chunks_done if epoch == start.epochs_done + 1 else 0
            steps_done = min(first_chunk * params.train.steps_per_execution, steps_per_epoch)
            with progress_bar(steps_per_epoch, f"epoch {epoch}", "step",
                              initial=steps_done) as bar:
                trainer.train_epoch(
                    chunks, steps_per_epoch, epoch, first_chunk,
                    lambda done: checkpoint_if_due(Position(epoch - 1, done), ctrl_c), bar)
            metrics = {"train": None, "val": None}
            if params.is_measured(epoch):
                metrics = measure_epoch(trainer, measured, epoch)
                samples.append(next(rows))
                live.step = epoch - 1  # dvclive's step: the epoch, counted from 0
                for split, values in metrics.items():
                    for name, value in values.items():
                        live.log_metric(f"{split}/{name}", value)
                live.next_step()
            now = time.perf_counter()
            since, done = paced_from or (started, epoch - 1)
            left = time_left(now - since, epoch - done, params.epochs - epoch)
            paced_from = paced_from or (now, epoch)
            print(format_epoch(epoch, params.epochs, metrics["train"], metrics["val"],
                               now - started, left), file=sys.stderr)
            checkpoint_if_due(Position(epoch), ctrl_c)
    return np.stack(samples).astype(np.float32)


def measure_epoch(trainer: Trainer, measured: dict, epoch: int) -> dict:
    """The losses over each split after `epoch`; an error if one is not finite."""
    # Measurement noise gets its own counter range, far from the training steps'.
    counter = 2**40 + epoch * 2**24
    metrics = {"train": trainer.measure(*measured["train"], counter),
               "val": trainer.measure(*measured["val"], counter + 2**23)}
    require_finite_metrics(metrics, epoch, trainer.params)
    return metrics


def require_finite_metrics(metrics: dict, epoch: int, params: Params) -> None:
    for split, values in metrics.items():
        for name, value in values.items():
            if not np.isfinite(value):
                raise Diverged(f"epoch {epoch}", f"the {split} split's {name}", params)


def require_finite_weights(model: VAE, params: Params) -> None:
    for weight in model.weights:
        if not np.all(np.isfinite(weight.numpy())):
            raise Diverged(f"the end of epoch {params.epochs}", f"weight {weight.path}", params)


def train(params: Params, prepared_dir: str | Path, model_dir: str | Path,
          samples_path: str | Path, live_dir: str | Path, checkpoint_dir: str | Path) -> VAE:
    """Train the article's VAE on the prepared splits; write the model, samples and metrics,
    all together at the end: a failed, diverged or stopped run keeps the last results. A run
    that was stopped resumes from its checkpoint in `checkpoint_dir`. Of several worker
    processes, only the chief writes, and none checkpoints."""
    gpus = set_up_tensorflow(params.seed)
    strategy = select_strategy(params.train, gpus, params.batch_size)
    print(f"training on {describe(strategy)}", file=sys.stderr)
    if is_multi_worker(strategy):  # a chief resuming alone would leave the others at epoch 1
        print("multi_worker: no checkpoints (every worker would need the same one back); a "
              "stopped run starts again at epoch 1", file=sys.stderr)
        checkpoint_dir = None
    if not is_chief(strategy):
        with tempfile.TemporaryDirectory() as scratch:
            return _train(params, strategy, prepared_dir, Path(scratch) / "model",
                          Path(scratch) / "samples.npy", Path(scratch) / "live", None)
    return _train(params, strategy, prepared_dir, model_dir, samples_path, live_dir,
                  checkpoint_dir)


def _train(params: Params, strategy: tf.distribute.Strategy, prepared_dir: str | Path,
           model_dir: str | Path, samples_path: str | Path, live_dir: str | Path,
           checkpoint_dir: str | Path | None) -> VAE:
    with staged_outputs(folders=[model_dir, live_dir], files=[samples_path]) as outputs:
        train_split, val_split = load_split(prepared_dir, "train"), load_split(prepared_dir, "val")
        trainer = build_trainer(params, strategy, len(train_split.images) // params.batch_size)
        family.build("output_bias_init", params).initialise(trainer.model, train_split.images)
        data_files = [Path(prepared_dir) / f"{split}.npz" for split in ("train", "val")]
        checkpoints = Checkpoints(checkpoint_dir, params, data_files)
        staged_live = outputs[live_dir]
        start, samples = checkpoints.restore(trainer.model, trainer.optimizer, staged_live)
        with Live(str(staged_live), dvcyaml=None, save_dvc_exp=False,
                  resume=start.epochs_done > 0) as live:
            live.step = start.epochs_done  # dvclive cannot tell "one epoch logged" from none
            samples = run_epochs(trainer, train_split, val_split, live, staged_live,
                                 checkpoints, start, samples)
        require_finite_weights(trainer.model, params)
        save_model(trainer.model, outputs[model_dir])
        outputs[samples_path].write_bytes(npy_bytes(samples))
    checkpoints.remove()
    return trainer.model


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()
