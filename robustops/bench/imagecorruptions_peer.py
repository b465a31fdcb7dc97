"""imagecorruptions 1.1.2 on the current stack: the peer for tests and benchmarks.

It imports pkg_resources (gone from current setuptools), uses np.float_ (gone
from numpy 2) and passes `multichannel` to scikit-image's gaussian (now
`channel_axis`). The shims are applied only when a test or a benchmark loads
the peer; robustops' own corruptions never import it.
"""
import importlib
import os
import sys
import types

import numpy as np


def load():
    """The imagecorruptions module, or None when it (or its dependencies) is missing."""
    try:
        import skimage.filters  # noqa: F401
        import cv2  # noqa: F401
    except ImportError:
        return None
    if "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package, name):
            spec = importlib.util.find_spec(package.split(".")[0])
            return os.path.join(os.path.dirname(spec.origin), name)

        shim.resource_filename = resource_filename
        # pytest's monkeypatch.syspath_prepend calls this whenever pkg_resources is imported.
        shim.fixup_namespace_packages = lambda *args, **kwargs: None
        sys.modules["pkg_resources"] = shim
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    import skimage.filters
    if not getattr(skimage.filters.gaussian, "_robustops_shim", False):
        original = skimage.filters.gaussian

        def gaussian(image, *args, multichannel=None, **kwargs):
            if multichannel is not None:
                kwargs.setdefault("channel_axis", -1 if multichannel else None)
            return original(image, *args, **kwargs)

        gaussian._robustops_shim = True
        skimage.filters.gaussian = gaussian
    try:
        ic = importlib.import_module("imagecorruptions")
    except ImportError:
        return None
    ic.corruptions.gaussian = skimage.filters.gaussian
    return ic


def reference(ic, img_uint8_hwc, name, severity, seed=0):
    """The reference corruption of one uint8 HWC image as a float array in [0, 255].

    Called as imagecorruptions.corrupt calls it (a PIL image in), but returned
    before its final np.uint8 truncation, so comparisons see the exact values.
    """
    from PIL import Image

    np.random.seed(seed)
    out = ic.corruptions.__dict__[name](Image.fromarray(img_uint8_hwc), severity)
    return np.asarray(out, dtype=np.float64)


def corrupt_uint8(ic, img_uint8_hwc, name, severity, seed=0):
    """imagecorruptions.corrupt itself (uint8 out), for timing the peer as users call it."""
    np.random.seed(seed)
    return ic.corrupt(img_uint8_hwc, severity=severity, corruption_name=name)
