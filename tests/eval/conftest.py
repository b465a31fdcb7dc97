"""Fixtures of the evaluation tests."""
import pytest

from robustops.bench.imagecorruptions_peer import load
from robustops.eval.corruptions import frost as frost_mod


@pytest.fixture(scope="session")
def ic():
    """The imagecorruptions peer (shimmed for the current stack); skips when not installed."""
    mod = load()
    if mod is None:
        pytest.skip("imagecorruptions (or scikit-image / OpenCV) not installed")
    return mod


@pytest.fixture
def fresh_frost(monkeypatch):
    """frost with empty caches and no source chosen (neither by call nor by environment)."""
    monkeypatch.delenv(frost_mod.SOURCE_ENV, raising=False)
    frost_mod.set_frost_source(None)
    frost_mod._photos.cache_clear()
    frost_mod._rescaled.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    frost_mod.set_frost_source(None)
    frost_mod._photos.cache_clear()
    frost_mod._rescaled.cache_clear()
