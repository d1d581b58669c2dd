"""Builds the mllp wheel: the ctypes package plus libmllp, compiled by cargo through setuptools-rust.

The Rust crate is the repository root, two levels up (``../../Cargo.toml``). An sdist carries a
copy of it in ``rust/`` (see ``sdist_with_crate``), so ``python -m build`` -- which builds the wheel
from the sdist, away from the repository -- compiles the same crate. ``CARGO_TARGET_DIR`` set in
the environment is honoured by cargo (CI points it at the repository's ``target/``).

The library is a plain C ABI shared object, not a CPython extension, so the wheel is tagged
``py3-none-<platform>`` and the file is named ``mllp/libmllp.so``.
"""

import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, Strip

try:  # setuptools >= 70.1 has bdist_wheel built in (pyproject.toml asks for >= 77)
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - older setuptools with the wheel package
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

#: In an sdist the crate sits in rust/; in the repository it is two levels up.
CRATE = "rust" if os.path.isfile(os.path.join("rust", "Cargo.toml")) else os.path.join("..", "..")
#: What an sdist needs of the crate to build it (the workspace member must exist for cargo).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs"]
CRATE_DIRS = ["src", "benches", os.path.join("bench", "mllp-bench"), "include"]
LIB_NAME = "libmllp"
LIB_FILE = LIB_NAME + (".dylib" if sys.platform == "darwin" else ".so")


class build_ext_plain_name(build_ext):
    """Names the library ``libmllp.so`` instead of an extension-module name
    (``libmllp.cpython-311-x86_64-linux-gnu.so``): ctypes loads it by path, any Python."""

    def get_ext_filename(self, fullname):
        if fullname.split(".")[-1] == LIB_NAME:
            return os.path.join(*fullname.split(".")[:-1], LIB_FILE)
        return super().get_ext_filename(fullname)


class bdist_wheel_any_python(bdist_wheel):
    """``py3-none-<platform>``: the wheel holds no CPython extension, only a C library."""

    def get_tag(self):
        _python, _abi, plat = super().get_tag()
        return "py3", "none", plat


class sdist_with_crate(sdist):
    """Copies the Rust crate into the sdist's ``rust/`` so the sdist builds on its own."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        if CRATE == "rust":  # building an sdist from an sdist: rust/ is already in the manifest
            return
        dest = os.path.join(base_dir, "rust")
        ignore = shutil.ignore_patterns("target", "__pycache__", "*.pyc")
        for name in CRATE_FILES:
            src = os.path.join(CRATE, name)
            if os.path.isfile(src):
                os.makedirs(dest, exist_ok=True)
                shutil.copy2(src, os.path.join(dest, name))
        for name in CRATE_DIRS:
            src = os.path.join(CRATE, name)
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(dest, name), ignore=ignore, dirs_exist_ok=True)


setup(
    rust_extensions=[
        RustExtension(
            "mllp." + LIB_NAME,
            path=os.path.join(CRATE, "Cargo.toml"),
            binding=Binding.NoBinding,
            # The release profile keeps line tables (debug = 1) for the repository's profiling;
            # the wheel does not need them.
            strip=Strip.Debug,
            py_limited_api=False,
        )
    ],
    cmdclass={
        "build_ext": build_ext_plain_name,
        "bdist_wheel": bdist_wheel_any_python,
        "sdist": sdist_with_crate,
    },
)
