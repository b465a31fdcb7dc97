"""Fixtures of the evaluation tests."""
import pytest

from robustops.bench.imagecorruptions_peer import load


@pytest.fixture(scope="session")
def ic():
    """The imagecorruptions peer (shimmed for the current stack); skips when not installed."""
    mod = load()
    if mod is None:
        pytest.skip("imagecorruptions (or scikit-image / OpenCV) not installed")
    return mod
