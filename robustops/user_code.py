"""The user's own model and dataset builders, named ``package.module:factory`` (as in
``robustops eval --model mypkg.models:build --dataset mypkg.data:test_set``).

The module is imported (the current directory is searched first, as ``python -m`` does,
so a package beside the command's working directory is found without installing it) and
the attribute called: a model factory with ``num_classes`` when it takes that argument,
else with none; a dataset factory with ``split`` when it takes it. Every failure (module
or attribute missing, arguments it needs, a result of the wrong type) is a ValueError
that names the spec and what to fix.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from typing import Any, Callable, Dict, Optional

__all__ = ["FACTORY_SPEC", "is_factory_spec", "load_factory", "build_user_model",
           "build_user_dataset"]

# package.module:attribute (dotted module, one attribute name)
FACTORY_SPEC = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
_SPEC = re.compile(f"^{FACTORY_SPEC}$")


def is_factory_spec(text: Any) -> bool:
    return isinstance(text, str) and bool(_SPEC.match(text))


def load_factory(spec: str, what: str = "factory") -> Callable[..., Any]:
    """The callable named by spec 'package.module:attribute'."""
    if not is_factory_spec(spec):
        raise ValueError(f"{what} {spec!r} is not of the form package.module:factory")
    module_name, attr = spec.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # the user's package in the current folder, as `python -m`
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name
                                     or module_name.startswith(exc.name + ".")):
            raise ValueError(f"{what} {spec!r}: no module named {exc.name!r} (run from the "
                             "folder that holds it, install it, or add its folder to "
                             "PYTHONPATH)") from None
        raise ValueError(f"{what} {spec!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # the user's module raised while importing
        raise ValueError(f"{what} {spec!r}: importing {module_name} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_")
                        and callable(getattr(module, n)))
        raise ValueError(f"{what} {spec!r}: module {module_name} has no attribute {attr!r} "
                         f"(its callables: {', '.join(public[:8]) or 'none'})")
    fn = getattr(module, attr)
    if not callable(fn):
        raise ValueError(f"{what} {spec!r} is a {type(fn).__name__}, not a callable")
    return fn


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call(fn: Callable, spec: str, what: str, kwargs: Dict[str, Any]) -> Any:
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        given = ", ".join(kwargs) or "no arguments"
        raise ValueError(f"{what} {spec!r} cannot be called with {given} ({exc}); give its "
                         "other arguments defaults, or name a wrapper that sets them") from None
    except ValueError:  # no signature to check: call and see
        pass
    return fn(**kwargs)


def build_user_model(spec: str, num_classes: Optional[int] = None):
    """The nn.Module that the factory named by spec builds (untrained or with its own weights)."""
    from torch import nn

    fn = load_factory(spec, "model factory")
    kwargs = {"num_classes": num_classes} if num_classes is not None and _accepts(
        fn, "num_classes") else {}
    model = _call(fn, spec, "model factory", kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {spec!r} returned a {type(model).__name__}, not an "
                         "nn.Module")
    return model


def build_user_dataset(spec: str, split: str):
    """The data that the factory named by spec returns for `split` ('train' | 'test'): a
    Dataset, a DataLoader or an (x, y) tuple of tensors."""
    from torch import Tensor
    from torch.utils.data import Dataset

    fn = load_factory(spec, "dataset factory")
    data = _call(fn, spec, "dataset factory", {"split": split} if _accepts(fn, "split") else {})
    ok = isinstance(data, Dataset) or (isinstance(data, tuple) and len(data) == 2
                                       and all(isinstance(t, Tensor) for t in data)) \
        or (hasattr(data, "__iter__") and not isinstance(data, (str, bytes, dict, Tensor)))
    if not ok:
        raise ValueError(f"dataset factory {spec!r} returned a {type(data).__name__}, not a "
                         "Dataset, a DataLoader or an (x, y) tuple of tensors")
    return data
