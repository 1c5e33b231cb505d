# Sourced by scripts/test-python and scripts/demo, after lib/cache.sh: a virtual environment with
# PyPI's torch, and the package python/ built into it.
#
#   python_venv DIR         makes DIR a venv of Debian's Python 3 (or $XPU_HOST_PYTHON)
#   python_install_torch DIR VERSION
#                           installs torch==VERSION (and what the tests use) into it
#                           from the wheels kept in $cache/wheels (scripts/lib/cache.sh),
#                           downloading them with pip the first time only: ~4 GB, as
#                           PyPI's Linux torch needs its CUDA libraries, which `import
#                           torch` loads even without a GPU. (pip's own HTTP cache
#                           cannot be relied on for this: it stores only responses
#                           that carry caching headers, and a registry proxy may
#                           send none.)
#   python_install_package DIR CARGO_TARGET_DIR
#                           builds and installs xpu_caching_host_allocator into it

# Debian's own Python by default: what a fresh Debian 12 has, with
# python3-venv and python3-dev from scripts/install-deps.
python_interpreter=${XPU_HOST_PYTHON:-/usr/bin/python3}

# What the tests and the build use besides torch, pinned so that runs agree.
python_test_requirements=(pytest==9.2.0 scikit-build-core==1.1.2 numpy==2.4.6)

python_venv() {
  local dir=$1
  "$python_interpreter" -m venv "$dir"
  "$dir/bin/python" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' || {
    echo "$0: the package needs Python 3.10 or newer; $python_interpreter is older (set XPU_HOST_PYTHON)" >&2
    return 1
  }
}

python_install_torch() {
  local dir=$1 version=$2 tag marker
  local requirements=("torch==$version" "${python_test_requirements[@]}")
  tag=$("$dir/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  # Says that every wheel these requirements resolve to, for this Python, is in $cache/wheels.
  marker=$cache/wheels/.python-$tag-torch-$version.complete
  if [[ ! -f $marker ]]; then
    echo "   downloading torch $version and its dependencies into $cache/wheels (once: ~4 GB)"
    "$dir/bin/pip" download --quiet --disable-pip-version-check --dest "$cache/wheels" "${requirements[@]}"
    touch "$marker"
  fi
  if ! "$dir/bin/pip" install --quiet --disable-pip-version-check --no-index --find-links "$cache/wheels" \
    "${requirements[@]}"; then
    # A wheel went missing from the cache: fetch what is needed again.
    rm -f "$marker"
    "$dir/bin/pip" install --quiet --disable-pip-version-check --find-links "$cache/wheels" "${requirements[@]}"
  fi
}

python_install_package() {
  local dir=$1 cargo_target=$2 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  # A plain `pip install .`, as a user runs it: the isolated build finds this
  # venv's torch in its site-packages (python/find_torch.py), and
  # XPU_HOST_ALLOCATOR_PYTHON_TORCH=ON makes not finding it an error. The
  # build's own requirement (scikit-build-core) comes from the cached wheels.
  # The build directory build/python/<wheel tag> is kept, so a second install
  # recompiles nothing that did not change; cargo builds into
  # CARGO_TARGET_DIR (release profile).
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} \
    "$dir/bin/pip" install --quiet --disable-pip-version-check --find-links "$cache/wheels" \
    --config-settings=cmake.define.XPU_HOST_ALLOCATOR_CARGO_TARGET_DIR="$cargo_target" \
    --config-settings=cmake.define.XPU_HOST_ALLOCATOR_PYTHON_TORCH=ON \
    "$root"
}
