"""Prints, for python/CMakeLists.txt, what torch the building Python has.

Lines of key=value: found (0 or 1), reason (when not found), version, dir (the
torch package directory, holding include/ and lib/), cxx11_abi, and
pybind11_definitions (the pybind11 ABI definitions PyTorch's own extensions
are built with, without -D, separated by ';'; empty from 2.10).
"""

import os
import sys
import sysconfig
import warnings


def import_torch():
    """torch, as the building Python imports it, or else from this
    interpreter's own site-packages: pip's build isolation takes them off
    sys.path, but they are where `pip install .` installs the package, so
    the torch there is the one it will run with. Appended, so that the
    isolated build's own packages still come first."""
    try:
        import torch
    except ImportError:
        for key in ("purelib", "platlib"):
            path = sysconfig.get_paths()[key]
            if path not in sys.path:
                sys.path.append(path)
        import torch
    return torch


def main() -> None:
    try:
        torch = import_torch()
        import torch.utils.cpp_extension as cpp_extension
    except Exception as error:  # noqa: BLE001 - any failure means "no torch to build against"
        print("found=0")
        print(f"reason=torch does not import: {type(error).__name__}: {error}".replace("\n", " "))
        return
    version = torch.__version__
    release = tuple(int(part) for part in version.split("+")[0].split(".")[:2])
    if release < (2, 8):
        print("found=0")
        print(f"reason=torch {version} is older than 2.8, which brought at::HostAllocator")
        return
    directory = os.path.dirname(torch.__file__)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flags = getattr(cpp_extension, "_get_pybind11_abi_build_flags", lambda: [])()
    # 2.8 gives them escaped for the shell its own builds run the compiler
    # through (-DPYBIND11_COMPILER_TYPE=\"_gcc\"); CMake escapes them itself.
    definitions = [flag[2:].replace('\\"', '"') for flag in flags if flag.startswith("-D")]
    print("found=1")
    print(f"version={version}")
    print(f"dir={directory}")
    print(f"cxx11_abi={int(bool(torch._C._GLIBCXX_USE_CXX11_ABI))}")
    print("pybind11_definitions=" + ";".join(definitions))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
