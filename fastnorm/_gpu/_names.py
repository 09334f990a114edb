"""Every kernel instantiation and the compile-time sizes: used by the NVRTC
build (name_expressions, options), by the offline compile checks and by the
emulated suite, so they cannot drift apart."""

TYPES = {"float16": "__half", "float32": "float", "float64": "double", "bfloat16": "__nv_bfloat16"}
VEC = {"__half": 8, "float": 4, "double": 2, "__nv_bfloat16": 8}   # elements per 16-byte access
WARP_K = 8       # elements per lane: a warp holds planes up to 256 elements
BLOCK_K = 16     # elements per thread with 512 threads: planes up to 8192
BLOCK_THREADS = 512
FUSED_CG = 512   # FN_FUSED_CG: channels per group the fused block kernel holds coefficients for
CHUNK = 16384    # FN_CHUNK: elements per statistics chunk (channels first)
CL_ROWS = 256    # FN_CL_ROWS: rows per statistics chunk (channels last), at least
CL_CT = 1024     # FN_CL_CT: channels per channels-last apply block (all of C at or below it)
MAX_GRID_X = 2**31 - 1   # CUDA's grid limits; the backend tiles launches to fit
MAX_GRID_YZ = 65535
COMMON = ("merge_chunks", "merge_groups", "coefs_from_triples")


def options():
    """NVRTC options of every module: the sizes are passed from here (the one
    place the backend reads them too), so a test may shrink them.  Stable from
    call to call, so CuPy's disk cache finds the compiled modules."""
    return ("-std=c++14", f"-DFN_CHUNK={CHUNK}", f"-DFN_CL_ROWS={CL_ROWS}", f"-DFN_FUSED_CG={FUSED_CG}",
            f"-DFN_CL_CT={CL_CT}")


def typed(t):
    """The instantiations for storage type t (a C++ type name)."""
    return [f"cf_fused_warp<{t}, {WARP_K}>", f"cf_fused_block<{t}, {BLOCK_K}>", f"cf_partial<{t}>",
            f"cf_apply<{t}>", f"cl_partial<{t}>", f"cl_apply_flat<{t}>", f"cl_apply_tile<{t}>"]


def names(t=None):
    """Every instantiation (t None), or the module of storage type t: its
    kernels and the common ones (each dtype is compiled on first use)."""
    out = list(COMMON)
    for u in (TYPES.values() if t is None else (t,)):
        out += typed(u)
    return out
