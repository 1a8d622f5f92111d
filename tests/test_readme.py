"""The README's Python examples run as written, and the package's public calls stay callable.

A documented call broke silently once: ``las_compiler.build`` was a function of the package
and also the name of a submodule, and importing the submodule replaced the function.
"""

import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np
import torch

import las_compiler
from las_compiler import models

README = Path(__file__).resolve().parents[1] / "README.md"


def python_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_public_calls_are_not_shadowed_by_submodules():
    names = {m.name for m in pkgutil.iter_modules(las_compiler.__path__)}
    assert not names & set(las_compiler.__all__), names & set(las_compiler.__all__)
    for module in ("compiler", "kernel_builder", "deploy", "frontend"):
        importlib.import_module(f"las_compiler.{module}")
    for name in ("build", "compile", "compile_block", "load"):
        assert callable(getattr(las_compiler, name)), name


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """Every ``python`` block of the README, in order, in one namespace, on a narrow
    LAS-ResNet-50 (base width 16, blocks 2-1-1-1) at 64x64 instead of the full width at
    224x224 (minutes of compiling); the checkpoint it loads is one of ours."""
    def narrow_las_resnet50(snet):
        return models.LASResNet((2, 1, 1, 1), snet, base_channels=16)

    monkeypatch.setattr(models, "las_resnet50", narrow_las_resnet50)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.save(narrow_las_resnet50("4-4-2-1").state_dict(), "resnet50.pth")
    examples = python_examples()
    assert len(examples) >= 3
    namespace: dict = {}
    for code in examples:
        exec(compile(code.replace("224, 224", "64, 64"), str(README), "exec"), namespace)  # noqa: S102
    x = namespace["x"]
    np.testing.assert_array_equal(namespace["same"].run(x), namespace["compiled"].run(x))
    assert namespace["block"].run(namespace["x_nhwc"]).shape[-1] == 64
    assert (tmp_path / "out" / "my-model" / "model.so").exists()
