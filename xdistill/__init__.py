"""xdistill: distil large multilingual transformers into small, fast students.

Methods: XtremeDistil (Mukherjee & Hassan Awadallah, ACL 2020), generation-
distillation (Melas-Kyriazi et al., 2019) and zero-shot distillation
(Rashid et al., 2020).
"""

from .utils import VERSION as __version__  # noqa: F401


def load_model(*args, **kwargs):
    """Load a saved student or teacher for inference; see :func:`xdistill.serving.inference.load_model`."""
    # deferred: serving imports torch and transformers (about 5 s); importing a light submodule of
    # the package (xdistill.errors, xdistill.data.readers) must not pay for them
    from .serving.inference import load_model as _load

    return _load(*args, **kwargs)
