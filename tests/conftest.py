"""Shared pytest fixtures.

``data_dir`` is the real data folder (``../shared/data`` beside the checkout, or
``$XDISTILL_DATA_DIR``). Tests that need it are skipped when it is absent,
unless ``XDISTILL_REQUIRE_DATA=1`` (set by ``.ci/run``), which makes its absence
an error so CI can never pass by skipping them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_data_dir() -> Path | None:
    env = os.environ.get("XDISTILL_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for c in candidates:
        if (c / "wikiann").is_dir():
            return c
    return None


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Files reused across runs (``$XDISTILL_CACHE``) go to a folder of this test session, not ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDISTILL_CACHE", str(tmp_path_factory.mktemp("xdistill-cache")))
        yield


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI commands replace the root logger's handlers; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = _find_data_dir()
    if found is None:
        if os.environ.get("XDISTILL_REQUIRE_DATA") == "1":
            pytest.fail("real data not found: set XDISTILL_DATA_DIR or place it at ../shared/data")
        pytest.skip("real data not found (../shared/data or $XDISTILL_DATA_DIR)")
    return found


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A tiny cased WordPiece tokenizer (:func:`tiny_models.make_tokenizer`), one per test module."""
    import tiny_models

    return tiny_models.make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def adapter():
    """The WikiANN task adapter (a module may define its own ``adapter``)."""
    import tiny_models

    return tiny_models.wikiann_adapter()
