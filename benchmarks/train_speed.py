"""Seconds per training epoch: this project's loop, the article's loop, two references, and
the machine's floor.

    .venv/bin/python benchmarks/train_speed.py [--epochs 5] [--recipe NAME] [-S KEY=VALUE ...]
    .venv/bin/python -m pip install -e '.[bench]'   # once, for the jax_scan reference

Runs on data/prepared when it exists (else random images of the same shape), with the model
hyperparameters of params.yaml, or with a reproduction's (`--recipe iwae_vae_warmup`: the
recipe laid over params.yaml as `tasks.py reproduce` lays it), and any param set with `-S` as
`dvc exp run -S` sets it (`-S architecture=conv`). This project's loops and the floor run for
every model, each reference where it implements the model (REFERENCES).
Each measurement runs in its own process (the article's loop needs TensorFlow's graph mode,
which is global) and reports its peak resident memory:
- project: `Trainer` as the train stage uses it (`steps_per_execution` steps per call, XLA as
  `train.jit_compile` chooses: not for convolutions on a CPU);
- measure: the train stage's per-epoch measurement (the losses over both splits);
- article: the article's loop ported literally to tf.compat.v1: placeholders, one
  `sess.run(train_op, feed_dict)` per batch;
- keras_fit: the same model and loss as an idiomatic Keras 3 `model.fit` (XLA where the
  project chooses it, `steps_per_execution` steps per execution, shuffled each epoch);
- jax_scan: the same in JAX + optax, a whole epoch one jitted `lax.scan` over batches, the
  training split resident on the device, the pixel noise of dynamic binarization drawn in the
  scan (skipped, with a note, without the `bench` extra);
- floor: the model's float32 FLOPs per epoch / this machine's measured matmul throughput.
The references train with Adam at `learning_rate`, `adam_beta_1`, `adam_beta_2` and
`adam_epsilon`; the floor counts the dense layers' and convolutions' products.
"""

import argparse
import importlib.metadata
import importlib.util
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def training_images(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    prepared = ROOT / "data" / "prepared"
    if (prepared / f"{split}.npz").exists():
        from vaepipe.data import load_split
        loaded = load_split(prepared, split)
        return loaded.images, loaded.labels
    rng = np.random.default_rng(0)
    n = 50000 if split == "train" else 10000
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.uint8))


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def project_trainer(params):
    """The train stage's `Trainer` for `params` on the training images, its endless chunks of
    batches, and its steps per epoch."""
    from vaepipe.devices import select_strategy, set_up_tensorflow
    from vaepipe.training import build_trainer, epoch_chunks
    images, labels = training_images()
    set_up_tensorflow(params.seed)
    strategy = select_strategy(params.train, [], params.batch_size)
    steps = len(images) // params.batch_size
    trainer = build_trainer(params, strategy, steps)
    return trainer, epoch_chunks(images, labels, params, strategy), steps


def time_project(params, epochs: int) -> list[float]:
    trainer, chunks, steps = project_trainer(params)
    times = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        trainer.train_epoch(chunks, steps, epoch)
        times.append(time.perf_counter() - started)
    return times


def time_measure(params, epochs: int) -> list[float]:
    """The train stage's per-epoch measurement: the article's losses over the whole training
    and validation splits, as `measure_epoch` runs it."""
    from vaepipe.devices import select_strategy, set_up_tensorflow
    from vaepipe.training import build_trainer, measure_epoch
    splits = {"train": training_images(), "val": training_images("val")}
    set_up_tensorflow(params.seed)
    strategy = select_strategy(params.train, [], params.batch_size)
    trainer = build_trainer(params, strategy, len(splits["train"][0]) // params.batch_size)
    times = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        measure_epoch(trainer, splits, epoch)
        times.append(time.perf_counter() - started)
    return times


def measurement_flop_share(params) -> float:
    """Forward passes over both splits, one sample of z each / an epoch's forward and backward
    passes (3 forwards) with train_samples samples."""
    train, val = (len(training_images(split)[0]) for split in ("train", "val"))
    one_sample = params.model_copy(update={"train_samples": 1})
    forward_per_image = flops_per_epoch(one_sample, train) / 3 / train
    return forward_per_image * (train + val) / flops_per_epoch(params, train)


def time_article(params, epochs: int) -> list[float]:
    """The article's graph, placeholders and feed_dict loop (tf.layers.dense written out)."""
    import tensorflow as tf
    v1 = tf.compat.v1
    v1.disable_eager_execution()
    v1.set_random_seed(params.seed)
    activation = getattr(tf.nn, params.activation)

    def dense(x, units, act=None):
        w = v1.get_variable(f"w{dense.count}", [x.shape[1], units],
                            initializer=v1.glorot_uniform_initializer())
        b = v1.get_variable(f"b{dense.count}", [units], initializer=v1.zeros_initializer())
        dense.count += 1
        y = tf.matmul(x, w) + b
        return act(y) if act else y
    dense.count = 0

    def mlp(x, layers):
        for size in layers:
            x = dense(x, size, activation)
        return x

    images = v1.placeholder(tf.float32, [None, 784])
    digits = v1.placeholder(tf.int32, [None])
    h = mlp(images, params.encoder_layers)
    mu, var = dense(h, params.z_dim), 1e-5 + tf.exp(dense(h, params.z_dim))
    z = mu + tf.sqrt(var) * v1.random_normal([tf.shape(images)[0], params.z_dim])
    logits = dense(mlp(images, params.digit_classification_layers), 10)
    decoded = tf.nn.sigmoid(dense(mlp(tf.concat([z, tf.nn.softmax(logits)], 1),
                                      params.decoder_layers), 784))
    std = params.decoder_std
    reconstruction = tf.reduce_sum(0.5 * np.log(2 * np.pi * std * std)
                                   + tf.square(images - decoded) / (2 * std * std), axis=1)
    kl = -0.5 * tf.reduce_sum(1 + tf.math.log(var) - mu**2 - var, axis=1)
    loss = (tf.reduce_mean(reconstruction + kl) + params.digit_classification_weight
            * tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=digits,
                                                                            logits=logits)))
    train_op = v1.train.AdamOptimizer(params.learning_rate).minimize(loss)
    x_all, y_all = training_images()
    x_all = x_all.reshape(len(x_all), -1).astype(np.float32) / 255
    rng = np.random.default_rng(params.seed)
    times = []
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for _ in range(epochs):
            started = time.perf_counter()
            order = rng.permutation(len(x_all))
            for start in range(0, len(order) - params.batch_size + 1, params.batch_size):
                batch = order[start:start + params.batch_size]
                sess.run(train_op, feed_dict={images: x_all[batch], digits: y_all[batch]})
            times.append(time.perf_counter() - started)
    return times


def time_keras_fit(params, epochs: int) -> list[float]:
    """The model as a Keras 3 subclass whose `compute_loss` is the article's loss, its encoder
    and decoder the architecture's layers (dense, or convolutions), compiled with XLA where the
    project's train step is (`devices.use_xla`)."""
    from vaepipe import family
    from vaepipe.devices import use_xla
    from vaepipe.tf_runtime import keras
    ops, Dense = keras.ops, keras.layers.Dense
    keras.utils.set_random_seed(params.seed)
    std, weight = params.decoder_std, params.digit_classification_weight
    config = params.model_dump()

    def mlp(hidden, outputs=None, last=None):
        layers = [Dense(size, activation=params.activation) for size in hidden]
        return keras.Sequential(layers + ([Dense(outputs, activation=last)] if outputs else []))

    class KerasVAE(keras.Model):
        def __init__(self):
            super().__init__()
            self.architecture = family.build("architecture", params)  # use_xla reads these two
            self.config = {"architecture": params.architecture}
            self.encoder = self.architecture.encoder(config)
            self.mu, self.log_var = Dense(params.z_dim), Dense(params.z_dim)
            self.classifier = mlp(params.digit_classification_layers, 10)
            self.decoder = self.architecture.decoder(config, "sigmoid")
            self.noise = keras.random.SeedGenerator(params.seed)

        def call(self, x):
            h = self.encoder(x)
            mu, var = self.mu(h), 1e-5 + ops.exp(self.log_var(h))
            z = mu + ops.sqrt(var) * keras.random.normal(ops.shape(mu), seed=self.noise)
            logits = self.classifier(x)
            return self.decoder(ops.concatenate([z, ops.softmax(logits)], axis=1)), mu, var, logits

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            decoded, mu, var, logits = y_pred
            reconstruction = ops.sum(0.5 * math.log(2 * math.pi * std * std)
                                     + ops.square(x - decoded) / (2 * std * std), axis=1)
            kl = -0.5 * ops.sum(1 + ops.log(var) - ops.square(mu) - var, axis=1)
            cross_entropy = keras.losses.sparse_categorical_crossentropy(y, logits,
                                                                         from_logits=True)
            return ops.mean(reconstruction + kl) + weight * ops.mean(cross_entropy)

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # logs are Python floats: the epoch is done
            times.append(time.perf_counter() - self.started)

    images, labels = training_images()
    x = images.reshape(len(images), -1).astype(np.float32) / 255
    model = KerasVAE()
    xla, _ = use_xla(params.train.jit_compile, model, device="/cpu:0")
    model.compile(keras.optimizers.Adam(params.learning_rate, beta_1=params.adam_beta_1,
                                        beta_2=params.adam_beta_2, epsilon=params.adam_epsilon),
                  jit_compile=xla, steps_per_execution=params.train.steps_per_execution)
    times = []
    model.fit(x, labels.astype(np.int32), batch_size=params.batch_size, epochs=epochs,
              shuffle=True, verbose=0, callbacks=[EpochTimes()])
    return times


def jax_mlp(layers, x, activation, last=None):
    """Dense layers [(w, b), ...]: `activation` after each but the last, `last` after the last."""
    for w, b in layers[:-1]:
        x = activation(x @ w + b)
    w, b = layers[-1]
    return x @ w + b if last is None else last(x @ w + b)


def jax_encode(weights, x, activation):
    """q(z|x)'s mean and variance, and the classifier's logits (None without a classifier)."""
    import jax.numpy as jnp
    h = jax_mlp(weights["encoder"], x, activation, last=activation)
    var = 1e-5 + jnp.exp(jax_mlp(weights["log_var"], h, activation))
    logits = (jax_mlp(weights["classifier"], x, activation) if "classifier" in weights
              else None)
    return jax_mlp(weights["mu"], h, activation), var, logits


def jax_decode(weights, z, digit_probs, activation):
    """The decoder's output layer before its activation (Bernoulli logits, or the Gaussian
    mean's), given c(x) when there is a classifier."""
    import jax.numpy as jnp
    if digit_probs is not None:
        z = jnp.concatenate([z, digit_probs], axis=-1)
    return jax_mlp(weights["decoder"], z, activation)


def jax_reconstruction(params, x, output):
    """-log p(x|z) per image from the decoder's output layer, as the params' likelihood."""
    import jax
    import jax.numpy as jnp
    if params.likelihood == "bernoulli":
        return -(x * output - jax.nn.softplus(output)).sum(axis=-1)
    std = params.decoder_std
    return jnp.sum(0.5 * math.log(2 * math.pi * std * std)
                   + (x - jax.nn.sigmoid(output)) ** 2 / (2 * std * std), axis=-1)


def time_jax_scan(params, epochs: int) -> list[float]:
    """The members a recipe uses: the article's (gaussian, classifier) or the IWAE paper's VAE
    (bernoulli logits, no classifier, dynamic binarization inside the scan, a KL warm-up, the
    iwae learning-rate schedule); one sample of z, dense layers."""
    import jax
    import jax.numpy as jnp
    import optax
    activation = getattr(jax.nn, params.activation)
    batch, z_dim = params.batch_size, params.z_dim
    digits = 10 if params.conditioning == "classifier" else 0

    def glorot(key, sizes):  # Keras's default initializers: Glorot-uniform kernels, zero biases
        layers = []
        for layer_key, fan_in, fan_out in zip(jax.random.split(key, len(sizes) - 1),
                                              sizes[:-1], sizes[1:]):
            limit = math.sqrt(6 / (fan_in + fan_out))
            layers.append((jax.random.uniform(layer_key, (fan_in, fan_out), jnp.float32,
                                              -limit, limit), jnp.zeros(fan_out)))
        return layers

    keys = jax.random.split(jax.random.key(params.seed), 6)
    hidden = params.encoder_layers[-1]
    weights = {"encoder": glorot(keys[0], [784, *params.encoder_layers]),
               "mu": glorot(keys[1], [hidden, z_dim]), "log_var": glorot(keys[2], [hidden, z_dim]),
               "decoder": glorot(keys[4], [z_dim + digits, *params.decoder_layers, 784])}
    if digits:
        weights["classifier"] = glorot(keys[3], [784, *params.digit_classification_layers, 10])
    images, labels = training_images()
    steps = len(images) // batch
    warmup_steps = params.kl_warmup_epochs * steps

    def loss(weights, x, y, eps, step):
        mu, var, logits = jax_encode(weights, x, activation)
        z = mu + jnp.sqrt(var) * eps
        kl = -0.5 * jnp.sum(1 + jnp.log(var) - mu**2 - var, axis=1)
        if warmup_steps:
            kl = jnp.minimum(1.0, step / warmup_steps) * kl
        digit_probs = None if logits is None else jax.nn.softmax(logits)
        output = jax_decode(weights, z, digit_probs, activation)
        vae = jnp.mean(jax_reconstruction(params, x, output) + kl)
        if logits is None:
            return vae
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return vae + params.digit_classification_weight * jnp.mean(cross_entropy)

    rate = params.learning_rate
    if params.learning_rate_schedule == "iwae":  # as the project: 3^i epochs at rate 10^(-i/7)
        ends = np.cumsum([3**i for i in range(7)])
        rate = optax.piecewise_constant_schedule(rate, {
            int(end) * steps: 10 ** (-1 / 7) for end in ends})
    optimizer = optax.adam(rate, b1=params.adam_beta_1, b2=params.adam_beta_2,
                           eps=params.adam_epsilon)
    # The split stays on the device as uint8; each batch is gathered and scaled in the scan.
    x_all = jax.device_put(images.reshape(len(images), -1))
    y_all = jax.device_put(labels.astype(np.int32))

    @jax.jit
    def epoch(state, x_all, y_all, key):
        def step(state, inputs):
            (weights, adam, count), (indices, key) = state, inputs
            x = x_all[indices].astype(jnp.float32) / 255
            pixel_key, noise_key = jax.random.split(key)
            if params.binarization == "dynamic":
                x = (jax.random.uniform(pixel_key, x.shape) < x).astype(jnp.float32)
            grads = jax.grad(loss)(weights, x, y_all[indices],
                                   jax.random.normal(noise_key, (batch, z_dim)), count)
            updates, adam = optimizer.update(grads, adam, weights)
            return (optax.apply_updates(weights, updates), adam, count + 1), None

        order_key, noise_key = jax.random.split(key)
        order = jax.random.permutation(order_key, len(x_all))[:steps * batch]
        batches = (order.reshape(steps, batch), jax.random.split(noise_key, steps))
        return jax.lax.scan(step, state, batches)[0]

    state, times = (weights, optimizer.init(weights), jnp.zeros((), jnp.float32)), []
    for index in range(epochs):
        started = time.perf_counter()
        state = epoch(state, x_all, y_all, jax.random.fold_in(keys[5], index))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - started)
    return times


def matmul_gflops(repeats: int = 20) -> float:
    """Best float32 matmul throughput over large square products (GFLOP/s)."""
    import tensorflow as tf
    n = 2048
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    product()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product().numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def network_macs(network, inputs: int) -> tuple[int, int]:
    """Multiply-accumulates per image of a Keras stack's dense and convolution layers, and its
    output's width."""
    from vaepipe.tf_runtime import keras
    x, macs = keras.ops.zeros((1, inputs)), 0
    for layer in network.layers:
        y = layer(x)
        if isinstance(layer, keras.layers.Dense):
            macs += x.shape[-1] * y.shape[-1]
        elif isinstance(layer, keras.layers.Conv2DTranspose):  # each input position, spread
            macs += math.prod(x.shape[1:]) * math.prod(layer.kernel_size) * y.shape[-1]
        elif isinstance(layer, keras.layers.Conv2D):  # each output position, gathered
            macs += math.prod(y.shape[1:]) * math.prod(layer.kernel_size) * x.shape[-1]
        x = y
    return macs, math.prod(x.shape[1:])


def flops_per_epoch(params, images: int) -> float:
    """Dense and convolution FLOPs for forward + backward (3x forward) over one epoch of
    images."""
    from vaepipe import family

    def mlp_macs(sizes):
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    digits = family.build("conditioning", params).width  # 0 without the classifier
    sizes = [params.z_dim] if isinstance(params.z_dim, int) else list(params.z_dim)
    architecture, config = family.build("architecture", params), params.model_dump()
    hidden, width = network_macs(architecture.encoder(config), 784)
    encoder = hidden + 2 * width * sizes[0]
    classifier = mlp_macs([784, *params.digit_classification_layers, 10]) if digits else 0
    # k samples of z per image: the decoder and every layer above z1 run k times, both ways
    between = sum(mlp_macs([lower, *params.latent_hidden_layers]) + mlp_macs(
        [upper, *params.latent_hidden_layers]) + 2 * params.latent_hidden_layers[-1] * (
        lower + upper) for lower, upper in zip(sizes, sizes[1:]))
    decoder = (network_macs(architecture.decoder(config, None), sizes[0] + digits)[0]
               + between) * params.train_samples
    steps = images // params.batch_size
    return 3 * 2 * (encoder + classifier + decoder) * steps * params.batch_size


def benchmark_params(recipe: str | None, sets: list[str] = ()):
    """params.yaml's, with `recipe` (a name in reproductions/) laid over it as `tasks.py
    reproduce` lays it, then each `KEY=VALUE` of `sets` as `dvc exp run -S` sets it."""
    from ruamel.yaml import YAML
    from vaepipe.errors import PipelineError
    from vaepipe.params import parse_params, parse_yaml
    from vaepipe.reproduce import RECIPES, recipe_params
    params_text = (ROOT / "params.yaml").read_text()
    if recipe is not None:
        path = ROOT / RECIPES / f"{recipe}.yaml"
        if not path.is_file():
            raise PipelineError(f"{path.relative_to(ROOT)}: no such recipe")
        params_text = recipe_params(params_text, path.read_text(), path)
    overrides = {}
    for setting in sets:
        key, equals, value = setting.partition("=")
        if not equals:
            raise PipelineError(f"-S {setting}: not KEY=VALUE")
        *groups, last = key.split(".")
        target = overrides
        for group in groups:
            target = target.setdefault(group, {})
        target[last] = YAML(typ="safe").load(value)
    if overrides:
        params_text = recipe_params(params_text, json.dumps(overrides), Path("-S"))
    return parse_params(parse_yaml(params_text, ROOT / "params.yaml"))


def add_param_options(parser: argparse.ArgumentParser) -> None:
    """--recipe NAME and -S KEY=VALUE, the params every benchmark of this folder takes."""
    parser.add_argument("--recipe", metavar="NAME",
                        help="a reproduction's params (reproductions/NAME.yaml)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a param set over params.yaml (and the recipe), as `dvc exp run -S` "
                             "sets it, e.g. -S architecture=conv")


def checked_params(args):
    """`benchmark_params` of the parsed options; bad params stop here, in one line."""
    from vaepipe.errors import PipelineError
    try:
        return benchmark_params(args.recipe, args.set)
    except PipelineError as error:
        sys.exit(f"error: {error}")


def params_source(args) -> str:
    """The params in words: the file and each -S."""
    source = "params.yaml" if args.recipe is None else f"reproductions/{args.recipe}.yaml"
    return " ".join([source, *(f"-S {setting}" for setting in args.set)])


def param_arguments(args) -> list[str]:
    """The options again, for a measuring subprocess."""
    return [*(["--recipe", args.recipe] if args.recipe else []),
            *(part for setting in args.set for part in ("-S", setting))]


def measure(mode: str, epochs: int, recipe: str | None, sets: list[str]) -> dict:
    params = benchmark_params(recipe, sets)
    if mode == "floor":
        gflops = matmul_gflops()
        flops = flops_per_epoch(params, len(training_images()[0]))
        return {"seconds": flops / (gflops * 1e9), "gflops": gflops, "gflop_per_epoch": flops / 1e9}
    times = LOOPS[mode](params, epochs)
    # The first epoch includes tracing and compilation: leave it out of the median.
    return {"seconds": statistics.median(times[1:]), "first": times[0],
            "peak_mb": peak_memory_mb()}


LOOPS = {"project": time_project, "measure": time_measure, "article": time_article,
         "keras_fit": time_keras_fit, "jax_scan": time_jax_scan}


def article_loss(params) -> bool:
    """One sample of the article's ELBO (Gaussian decoder, classifier, one stochastic layer,
    the intensities as they are, a constant rate, no KL weighting)."""
    return (params.objective, params.train_samples, isinstance(params.z_dim, int),
            params.likelihood, params.conditioning, params.binarization,
            params.learning_rate_schedule, params.kl_warmup_epochs, params.kl_weight) == (
        "elbo", 1, True, "gaussian", "classifier", "none", "constant", 0, 1)


# What each reference implements, in words and as a test of the params; this project's loops
# implement every model.
REFERENCES = {
    "article": ("the article's model alone",
                lambda params: article_loss(params) and params.architecture == "mlp"),
    "keras_fit": ("the article's loss, either architecture", article_loss),
    "jax_scan": ("one sample of the ELBO, one stochastic layer and dense layers",
                 lambda params: (params.objective, params.train_samples,
                                 isinstance(params.z_dim, int), params.architecture,
                                 params.kl_weight) == ("elbo", 1, True, "mlp", 1)),
}


def major_version(package: str) -> int:
    try:
        return int(importlib.metadata.version(package).split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


def missing_packages(mode: str) -> str | None:
    """Why a reference cannot run here, in one line; None when it can."""
    if mode == "keras_fit" and major_version("keras") < 3:
        return "needs Keras 3: .venv/bin/python -m pip install -r requirements.lock"
    if mode == "jax_scan" and not all(importlib.util.find_spec(name) for name in ("jax", "optax")):
        return "jax and optax are not installed: .venv/bin/python -m pip install -e '.[bench]'"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    add_param_options(parser)
    parser.add_argument("--mode", choices=(*LOOPS, "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.epochs, args.recipe, args.set)))
        return
    params = checked_params(args)
    print(f"params: {params_source(args)}")
    modes, notes = ["project", "measure"], []
    for mode, (implements, fits) in REFERENCES.items():
        if fits(params):
            modes.append(mode)
        else:
            notes.append(f"{mode}: skipped (it implements {implements})")
    passed = param_arguments(args)
    results = {}
    for mode in (*modes, "floor"):
        if why := missing_packages(mode):
            notes.append(f"{mode}: skipped ({why})")
            continue
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--epochs",
                              str(args.epochs), *passed], capture_output=True, text=True,
                             check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    floor = results["floor"]
    print(f"matmul throughput: {floor['gflops']:.0f} GFLOP/s; model: "
          f"{floor['gflop_per_epoch']:.1f} GFLOP per epoch (forward + backward)")
    print(f"{'loop':<10}{'s/epoch':>9}{'x floor':>9}{'first epoch s':>15}{'peak MB':>9}")
    for mode, r in results.items():
        first = f"{r['first']:15.2f}" if "first" in r else f"{'':15}"
        peak = f"{r['peak_mb']:9.0f}" if "peak_mb" in r else f"{'':9}"
        print(f"{mode:<10}{r['seconds']:9.2f}{r['seconds'] / floor['seconds']:9.2f}{first}{peak}")
    share = results["measure"]["seconds"] / results["project"]["seconds"]
    print(f"measure: the per-epoch losses over the training and validation splits, "
          f"{share:.0%} of a project epoch; its forward passes alone are "
          f"{measurement_flop_share(params):.0%} of an epoch's FLOPs")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
