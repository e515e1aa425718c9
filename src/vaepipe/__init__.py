"""vaepipe: the article's conditional VAE on MNIST as a reproducible DVC pipeline.

`vaepipe.load_model("models/vae")` gives the trained model: `encode(x) -> (mu, var)`,
`classify(x) -> logits`, `decode(z, digit_probs) -> x_mean`, and its hyperparameters in `config`.
"""

__all__ = ["load_model"]


def __getattr__(name: str):
    # Imported on first use, so that the data stages never wait for TensorFlow to load.
    if name == "load_model":
        from vaepipe.model import load_model
        return load_model
    raise AttributeError(f"module 'vaepipe' has no attribute {name!r}")
