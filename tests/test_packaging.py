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
