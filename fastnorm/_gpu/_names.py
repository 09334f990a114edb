"""Every kernel instantiation: used by the NVRTC build (name_expressions) and
by the offline nvcc compile check, so the two cannot drift apart."""

TYPES = {"float16": "__half", "float32": "float", "float64": "double", "bfloat16": "__nv_bfloat16"}
VEC = {"__half": 8, "float": 4, "double": 2, "__nv_bfloat16": 8}
WARP_K = 8       # elements per lane: a warp holds planes up to 256 elements
BLOCK_K = 16     # elements per thread with 512 threads: planes up to 8192
BLOCK_THREADS = 512
CHUNK = 16384    # FN_CHUNK: elements per statistics chunk (channels first)
CL_ROWS = 256    # FN_CL_ROWS: rows per statistics chunk (channels last)
MAX_GRID_X = 2**31 - 1   # CUDA's grid limits; the backend tiles launches to fit
MAX_GRID_YZ = 65535


def options():
    """NVRTC options of every module: the chunk sizes are passed from here (the
    one place the backend reads them too), so a test may shrink them."""
    return ("-std=c++14", f"-DFN_CHUNK={CHUNK}", f"-DFN_CL_ROWS={CL_ROWS}")


def names():
    out = ["merge_chunks", "merge_groups", "coefs_from_triples"]
    for t in TYPES.values():
        out += [f"cf_fused_warp<{t}, {WARP_K}>", f"cf_fused_block<{t}, {BLOCK_K}>", f"cf_partial<{t}>",
                f"cf_apply<{t}>", f"cl_partial<{t}>", f"cl_apply<{t}, {VEC[t]}>", f"cl_apply<{t}, 1>"]
    return out
