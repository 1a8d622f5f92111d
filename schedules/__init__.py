"""Per-target schedule rules for LAS kernels (dlight style); ``las_compiler.schedules``.

Rules arrive with the kernel issue; the package exists so the install layout is fixed now.
"""
