"""Install layout: import names, and the models package stays free of TVM."""

import subprocess
import sys


def test_models_and_schedules_install_under_las_compiler():
    import las_compiler.models
    import las_compiler.schedules

    assert las_compiler.models.las_resnet50 is not None
    assert las_compiler.schedules.__name__ == "las_compiler.schedules"


def test_models_do_not_import_tvm():
    code = "import sys, las_compiler.models, las_compiler.cli; print('tvm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_package_directory_is_installed():
    """pyproject lists packages explicitly (package-dir mapping); a new subpackage must be added."""
    import pathlib

    import tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {path: name for name, path in config["package-dir"].items()}
    found = set()
    for top, name in mapping.items():
        for init in (root / top).rglob("__init__.py"):
            rel = init.parent.relative_to(root / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed, f"not listed in pyproject: {sorted(found - listed)}"
