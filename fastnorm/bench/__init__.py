"""``python -m fastnorm bench``: fastnorm timed against a parallel copy of the
same bytes and the installed peers (README.md, "Benchmarks").

    harness  the machine, the timing, the runs, their tables, summary and plot
    peers    what is timed: the copies, fastnorm, NumPy, torch, ONNX Runtime
    gpu      ``--device gpu``: CUDA-event timings (imports CuPy)

The command line is fastnorm/__main__.py; benchmarks/ (pytest-benchmark) uses
the same harness and peers.  ``import fastnorm`` does not import this package,
and importing it needs NumPy only: each peer imports its library when it runs.
"""
