"""The kernel levels of this build and CPU, and a context manager that runs
code at one of them (fastnorm._cpu._engine.configure, what FASTNORM_ISA
selects at import)."""

from contextlib import contextmanager

from fastnorm._cpu import _engine as E

LEVELS = E.simd_levels()


def _has_unfused():
    old = E.configure()
    try:
        for level in LEVELS:
            try:
                E.configure(isa=level, fused=False)
                return level
            except ValueError:
                pass
        return None
    finally:
        E.configure(**old)


UNFUSED_LEVEL = _has_unfused()


@contextmanager
def kernels(isa=None, fused=None, stream=None):
    """Run the block with these kernels, then restore the previous ones."""
    old = E.configure(isa=isa, fused=fused, stream=stream)
    try:
        yield
    finally:
        E.configure(**old)


def unfused():
    """The unfused kernels (what a CPU without FMA runs)."""
    return kernels(isa=UNFUSED_LEVEL, fused=False)
