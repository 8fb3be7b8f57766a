"""The packages' flat public names (`from msaic_model.model import load_config`): each resolves,
on first use, to the object of the module that holds it, and an unknown name is an AttributeError."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["msaic_model.model", "msaic_model.training"])
def test_every_public_name_resolves_to_its_module_object(package: str) -> None:
    module = importlib.import_module(package)
    exports = module._EXPORTS
    assert sorted(exports) == module.__all__ and exports
    for name, holder in exports.items():
        assert getattr(module, name) is getattr(importlib.import_module(holder), name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018
