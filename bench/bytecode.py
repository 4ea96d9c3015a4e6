"""forge's bytecode for the benchmarks, written once, as an installed forge has it.

pip compiles a package's modules when it installs it; an editable install in an environment
with PYTHONDONTWRITEBYTECODE set (as on the development machines) would otherwise compile every
forge module again at every start, and the benchmarks would time the compiler.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_forge() -> None:
    compileall.compile_dir(ROOT / "forge", quiet=1)
