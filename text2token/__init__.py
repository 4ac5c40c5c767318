"""text2token: turn a pretrained language model into a text embedder by token target prediction.

    import text2token
    model = text2token.load("runs/my-run")          # or a base LM: text2token.load("HuggingFaceTB/SmolLM2-135M")
    vectors = model.encode(["a text", "another"], batch_size=32, normalize=True)
"""

from .config import TrainConfig
from .errors import Text2TokenError
from .model import Text2TokenModel, load

__version__ = "0.1.0"


def train(config: TrainConfig | None = None, resume: bool = False, overwrite: bool = False, **overrides):
    """Train the configured stages and return the run folder (see :mod:`text2token.stages`)."""
    from .stages import train as _train

    if config is None:
        config = TrainConfig(**overrides)
    elif overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    return _train(config, resume=resume, overwrite=overwrite)


__all__ = ["TrainConfig", "Text2TokenError", "Text2TokenModel", "load", "train", "__version__"]
