"""Every kernel instantiation and the compile-time sizes: used by the NVRTC
build (name_expressions, options), by the offline compile checks and by the
emulated suite, so they cannot drift apart."""

#: output types (and the floating input types): dtype name -> C++ type
TYPES = {"float16": "__half", "float32": "float", "float64": "double", "bfloat16": "__nv_bfloat16"}
#: integer input types, read directly by the kernels
INTS = {
    "uint8": "unsigned char",
    "int8": "signed char",
    "uint16": "unsigned short",
    "int16": "short",
    "uint32": "unsigned int",
    "int32": "int",
    "uint64": "unsigned long long",
    "int64": "long long",
}
INPUTS = {**TYPES, **INTS}
VEC = {"__half": 8, "float": 4, "double": 2, "__nv_bfloat16": 8}  # elements per 16-byte access
WARP_K = 8  # elements per lane: a warp holds planes up to 256 elements
BLOCK_K = 16  # elements per thread with 512 threads: planes up to 8192
BLOCK_THREADS = 512
FUSED_CG = 512  # FN_FUSED_CG: channels per group the fused block kernel holds coefficients for
CHUNK = 16384  # FN_CHUNK: elements per statistics chunk (channels first)
CL_ROWS = 256  # FN_CL_ROWS: rows per statistics chunk (channels last), at least
CL_CT = 1024  # FN_CL_CT: channels per channels-last apply block (all of C at or below it)
MAX_GRID_X = 2**31 - 1  # CUDA's grid limits; the backend tiles launches to fit
MAX_GRID_YZ = 65535
COMMON = ("merge_chunks", "merge_groups", "coefs_from_triples")  # in every forward module
BW_COMMON = ("sum_chunks", "bw_coefs", "bw_affine")  # in every backward module


def options():
    """NVRTC options of every module: the sizes are passed from here (the one
    place the backend reads them too), so a test may shrink them.  Stable from
    call to call, so CuPy's disk cache finds the compiled modules."""
    return (
        "-std=c++14",
        f"-DFN_CHUNK={CHUNK}",
        f"-DFN_CL_ROWS={CL_ROWS}",
        f"-DFN_FUSED_CG={FUSED_CG}",
        f"-DFN_CL_CT={CL_CT}",
    )


def forward(i, o):
    """The forward instantiations reading input type i, writing output type o
    (C++ type names): output type o's kernels with i's loads."""
    p = f"{i}, {o}"
    return [
        f"cf_fused_warp<{p}, {WARP_K}>",
        f"cf_fused_block<{p}, {BLOCK_K}>",
        f"cf_partial<{p}>",
        f"cf_apply<{p}>",
        f"cl_partial<{p}>",
        f"cl_apply_flat<{p}>",
        f"cl_apply_tile<{p}>",
    ]


def backward(t):
    """The backward instantiations of floating type t."""
    return [f"bw_cf_partial<{t}>", f"bw_cl_partial<{t}>", f"bw_cf_dx<{t}>", f"bw_cl_dx<{t}>"]


def modules():
    """Every module, each compiled on first use: the forward modules (input
    type, output type) and the backward modules ("backward", type).  The
    backward uses its type's forward module for the statistics."""
    return [(i, o) for i in INPUTS.values() for o in TYPES.values()] + [("backward", t) for t in TYPES.values()]


def module(m):
    """The instantiations of module m."""
    if m[0] == "backward":
        return list(BW_COMMON) + backward(m[1])
    return list(COMMON) + forward(*m)


def names(i=None, o=None):
    """Every instantiation (i None), or those of the forward module (i, o)
    (o None: i's own): a float32 call compiles the float32 kernels only."""
    if i is None:
        return [n for m in modules() for n in module(m) if n not in COMMON + BW_COMMON] + list(COMMON + BW_COMMON)
    return module((i, i if o is None else o))
