"""Write fastnorm/_cpu/fn_kernels_gen.c: every CPU kernel variant under its own name.

    python tools/gen_kernels.py            write fastnorm/_cpu/fn_kernels_gen.c
    python tools/gen_kernels.py --check    exit 1 if that file is not what this writes
    python tools/gen_kernels.py -o DIR     write fn_kernels_gen.c into DIR instead
    python tools/gen_kernels.py --list     print the (input, output) table

The CPU kernels exist once per statistics kind (an input type, read exactly
or rounded to float first), once per (input, output) pair and once per
floating type for the backward pass.  This file holds THE table of those
variants (TYPES, OUTPUTS, DIRECT, BACKWARD, EXACT_INT, EXACT_INT_CL below:
written once, everything else is derived from it) and expands the templates
fastnorm/_cpu/*.c.src over it, as NumPy's .c.src files are expanded, into
one C file where each variant is defined under its literal name
(`static void apply_cl_u8_f32(...)`), followed by the dispatch table that
names them.  The generated file is committed: the build compiles it as part
of fastnorm/_cpu/fn_kernels.c (once per target) and never runs this script;
tests/test_generated_kernels.py fails while the two disagree.  Standard
library only.

Template syntax (NumPy's @name@ and begin/end repeat, plus if and include):

    @NAME@                the value of NAME in the innermost enclosing row that has it
    @NAME(a, b)@          NAME's value is a pattern: {0}, {1} replaced by the arguments
    /**begin repeat TABLE*/ ... /**end repeat**/
                          the text once per row of TABLE (a function of the
                          enclosing rows); nested repeats see the outer rows
    /**begin repeat #K = 1, 2, 3#*/
                          an inline list, as NumPy writes it (several #A = ..#
                          lists are zipped)
    /**if NAME*/ ... /**else*/ ... /**end if*/
                          the branch for the row's boolean NAME (`if not NAME`)
    /**include FILE*/     FILE's text here, expanded in the current rows
    /** note */           a comment for the template's reader, not copied

Directives stand alone on their lines.  A line made only of placeholders that
expand to nothing is dropped; trailing spaces are removed; every other
character is copied as it is.  A placeholder no enclosing row defines is an
error.
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = os.path.join(ROOT, "fastnorm", "_cpu")
TEMPLATE = "fn_kernels.c.src"
OUTPUT = "fn_kernels_gen.c"

# ---------------------------------------------------------------- the table
# The storage types, in the order of their codes (fn_base.h's storage enum,
# fastnorm/_codes.py): name -> (code, C type, float holds every value).
TYPES = {
    "f16": (0, "uint16_t", True),
    "f32": (1, "float", True),
    "f64": (2, "double", False),
    "bf16": (3, "uint16_t", True),
    "u8": (4, "uint8_t", True),
    "i8": (5, "int8_t", True),
    "u16": (6, "uint16_t", True),
    "i16": (7, "int16_t", True),
    "u32": (8, "uint32_t", False),
    "i32": (9, "int32_t", False),
    "u64": (10, "uint64_t", False),
    "i64": (11, "int64_t", False),
}
# The output types (the floating ones: codes 0 .. FN_NOUT - 1).
OUTPUTS = ("f16", "f32", "f64", "bf16")
# The pairs the kernels read directly, in the order they are defined; every
# other (input, output) pair goes through a buffer of the values its output
# type loads (float, or double for float64) into one of the direct pairs
# f32, f64, f32_f16, f32_bf16.
DIRECT = (
    ("f32", "f32"),
    ("f64", "f64"),
    ("f16", "f16"),
    ("bf16", "bf16"),
    ("f32", "f16"),
    ("f32", "bf16"),
    ("u8", "f32"),
    ("i8", "f32"),
    ("u16", "f32"),
    ("i16", "f32"),
)
# The types with backward kernels (each into itself), by code.
BACKWARD = ("f16", "f32", "f64", "bf16")
# The integers whose statistics are summed in integers (exact whatever the
# order): the type of their sums of squares; and those whose channels-last
# statistics are too (8-bit: int32 lanes; 16-bit ones take the double lanes).
EXACT_INT = {"u8": "int32_t", "i8": "int32_t", "u16": "uint64_t", "i16": "uint64_t"}
EXACT_INT_CL = ("u8", "i8")

# ------------------------------------------------------- derived from it
FLOATING = OUTPUTS  # the floating storage types are the output types
HALF = {"f16": ("fn_h2f", "fn_f2h"), "bf16": ("fn_b2f", "fn_f2b")}  # to / from float, one element
_BYTES = {"8": 1, "16": 2, "32": 4, "64": 8, "float": 4, "double": 8}


def _size(t):
    ctype = TYPES[t][1]
    return _BYTES[ctype if ctype in _BYTES else re.sub(r"\D", "", ctype)]


def pair_name(i, o):
    """The suffix of a pair's kernels: the type alone when it is its own output."""
    return i if i == o else f"{i}_{o}"


def stats_kind(i, o):
    """The statistics a pair runs (stats_<kind>): the value its output type's
    kernels load, exact in double for float64 outputs, rounded to float first
    for the others where float does not hold every input value; the exact
    integers' own kind."""
    if i in EXACT_INT:
        return "exact_" + i
    if o == "f64" or TYPES[i][2]:
        return i
    return i + "f"


def stats_cl_kind(i, o):
    if i in EXACT_INT:
        return "exact_" + i if i in EXACT_INT_CL else i
    return stats_kind(i, o)


def _kind_row(name, t, to_float):
    ctype = TYPES[t][1]
    if to_float:
        return {"KIND": name, "TI": ctype, "LDV": f"vd_load_{name}", "LDS": "((double)(float)*({0}))"}
    if t in HALF:
        lds = f"((double){HALF[t][0]}(*({{0}})))"
    elif t == "f64":
        lds = "(*({0}))"
    else:
        lds = "((double)*({0}))"
    return {"KIND": name, "TI": ctype, "LDV": "vd_load" if t == "f64" else f"vd_load_{t}", "LDS": lds}


def kinds():
    """Every type read exactly, then the *f kinds of the types float does not hold."""
    rows = [_kind_row(t, t, False) for t in TYPES]
    return rows + [_kind_row(t + "f", t, True) for t in TYPES if not TYPES[t][2]]


def _pair_row(i, o):
    suf = pair_name(i, o)
    wd = o in ("f32", "f64")
    row = dict(_kind_row(i, i, False))
    row.update(
        SUF=suf,
        IN=i,
        OUT=o,
        TO=TYPES[o][1],
        SK=stats_kind(i, o),
        WD=wd,
        KEEP=i == o == "f32",
        ROWS=i == o and i in ("f32", "f64"),
        ACT_VIA=i not in FLOATING,
        VIA="bpa_" + i,
        BWD=i == o and i in BACKWARD,
        ELEM_BYTES=max(_size(i), _size(o)),
    )
    if wd and o == "f32":
        row.update(
            STORE1="vd_store_f32({0}, {1})",
            STREAM1="vd_stream16_f32({0}, {1})",
            STORE2="vd2_store_f32({0}, {1}, {2})",
            STREAM2="vd2_stream_f32({0}, {1}, {2})",
            SILU="fn_silu_d",
        )
    elif wd:
        row.update(
            STORE1="vd_store({0}, {1})",
            STREAM1="vd_stream16({0}, {1})",
            STORE2="(vd_store({0}, {1}), vd_store(({0}) + FN_VL, {2}))",
            STREAM2="(vd_stream({0}, {1}), vd_stream(({0}) + FN_VL, {2}))",
            SILU="fn_silu_libm",
        )
    if not wd:  # 16-bit outputs: applied in float
        if i == "f32":
            row.update(LDH="vs_load", LDF="(*({0}))")
        elif i in HALF:
            row.update(LDH=f"vs_load_{i}", LDF=f"{HALF[i][0]}(*({{0}}))")
        else:
            raise ValueError(f"direct pair {i} -> {o}: the float kernels load float32 and 16-bit inputs only")
    if o in HALF:
        row.update(STH=f"vs_store_{o}", F2H=HALF[o][1])
    return row


def float_pairs():
    return [_pair_row(i, o) for i, o in DIRECT if i in FLOATING]


def image_pairs():
    return [_pair_row(i, o) for i, o in DIRECT if i not in FLOATING]


def conversions():
    rows = []
    for t, (_, ctype, _) in TYPES.items():
        if t in HALF:
            f = f"{HALF[t][0]}(x[i])"
            d = f"(double){f}"
        else:
            f = "x[i]" if t == "f32" else "(float)x[i]"
            d = "x[i]" if t == "f64" else "(double)x[i]"
        rows.append({"IN": t, "TI": ctype, "CVF": f, "CVD": d})
    return rows


# the type of the buffer each output's kernels load: its direct pair (load type, output) runs
_LOAD = {"f16": "f32", "f32": "f32", "f64": "f64", "bf16": "f32"}
_CTYPE = {"f32": "float", "f64": "double"}


def buffered_pairs():
    rows = []
    for i in TYPES:
        for o in OUTPUTS:
            if (i, o) in DIRECT:
                continue
            load = _LOAD[o]
            assert (load, o) in DIRECT, f"{i} -> {o} buffers into {load} -> {o}, which is not direct"
            rows.append(
                {
                    "SUF": pair_name(i, o),
                    "TI": TYPES[i][1],
                    "TO": TYPES[o][1],
                    "CV": ("cvd_" if load == "f64" else "cvf_") + i,
                    "BT": _CTYPE[load],
                    "SK": stats_kind(i, o),
                    "AP": pair_name(load, o),
                    "CT": "double" if o in ("f32", "f64") else "float",
                }
            )
    return rows


def table_entry(i, o):
    """The names of one (input, output) entry of the dispatch table, by member."""
    ap = pair_name(i, o)
    return {
        "stats": "stats_" + stats_kind(i, o),
        "apply": "apply_" + ap,
        "planes": "planes_" + ap,
        "stats_cl": "stats_cl_" + stats_cl_kind(i, o),
        "apply_cl": "apply_cl_" + ap,
        "stats_apply": "stats_apply_" + ap,
    }


def outputs(lookup):
    i = lookup("IN")
    rows = []
    for o in OUTPUTS:
        how = "direct" if (i, o) in DIRECT else "buffered: " + ("double" if o == "f64" else "float")
        rows.append(
            {
                "OUT": o,
                "OUT_CODE": TYPES[o][0],
                "SK": stats_kind(i, o),
                "SKCL": stats_cl_kind(i, o),
                "AP": pair_name(i, o),
                "HOW": how,
            }
        )
    return rows


def bwd_types():
    codes = [TYPES[t][0] for t in BACKWARD]
    assert codes == list(range(len(BACKWARD))), "the backward table is indexed by code"
    return [{"T": t} for t in BACKWARD]


def _acts(w, silu):
    """The activation loops' cases (fn_base.h's FN_ACT_*) on a working value
    v of type w.  relu's zero arm is read from fn_relu_zero (fn_kernels.c)."""
    return [
        {"CASE": "case FN_ACT_RELU", "DECL": f"const {w} zr = ({w})fn_relu_zero;", "ACT": f"v = v < ({w})0 ? zr : v;"},
        {"CASE": "case FN_ACT_LEAKY", "DECL": "", "ACT": f"v = v >= ({w})0 ? v : v * ({w})slope;"},
        {"CASE": "case FN_ACT_SILU", "DECL": "", "ACT": f"v = {silu};"},
        {"CASE": "default", "DECL": "", "ACT": ""},
    ]


TABLES = {
    "kinds": lambda lookup: kinds(),
    "exact_kinds": lambda lookup: [{"IN": t, "TI": TYPES[t][1], "ACC2": a} for t, a in EXACT_INT.items()],
    "exact8_kinds": lambda lookup: [{"IN": t, "TI": TYPES[t][1]} for t in EXACT_INT_CL],
    "float_pairs": lambda lookup: float_pairs(),
    "image_pairs": lambda lookup: image_pairs(),
    "conversions": lambda lookup: conversions(),
    "buffered_pairs": lambda lookup: buffered_pairs(),
    "bwd_types": lambda lookup: bwd_types(),
    "inputs": lambda lookup: [{"IN": t, "IN_CODE": c} for t, (c, _, _) in TYPES.items()],
    "outputs": outputs,
    "acts_d": lambda lookup: _acts("double", "@SILU@(v)"),
    "acts_f": lambda lookup: _acts("float", "((float)fn_silu_d((double)(v)))"),
}


def table_names():
    """Every kernel the tables name: the dispatch table's, the backward table's
    and the buffer conversions."""
    names = []
    for i in TYPES:
        for o in OUTPUTS:
            names += table_entry(i, o).values()
    for t in BACKWARD:
        names += [f"bsums_{t}", f"bgrad_{t}", f"bsums_cl_{t}", f"bgrad_cl_{t}"]
    for t in TYPES:
        names += [f"cvf_{t}", f"cvd_{t}"]
    return list(dict.fromkeys(names))


# ------------------------------------------------------------ the templates
class TemplateError(Exception):
    pass


_DIRECTIVE = re.compile(r"^\s*/\*\*\s*(begin repeat|end repeat|if|else|end if|include)\b\s*(.*?)\s*\*{1,2}/\s*$")
_LIST = re.compile(r"#\s*(\w+)\s*=\s*([^#]*)#")
_NAME = re.compile(r"[A-Za-z_]\w*")
_ALONE = re.compile(r"^\s*(@[A-Za-z_]\w*@\s*)+$")


def parse(path):
    """The template at path as a tree: ("text", where, lines), ("repeat",
    where, spec, body), ("if", where, cond, then, else), ("include", where, file)."""
    fname = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    root = []
    stack = [("root", root, None)]
    i = 0
    while i < len(lines):
        line, where = lines[i], f"{fname}:{i + 1}"
        m = _DIRECTIVE.match(line)
        if m:
            kind, arg = m.groups()
            body = stack[-1][1]
            if kind == "begin repeat":
                node = ["repeat", where, arg, []]
                body.append(node)
                stack.append(("repeat", node[3], node))
            elif kind == "if":
                node = ["if", where, arg, [], []]
                body.append(node)
                stack.append(("if", node[3], node))
            elif kind == "else":
                if stack[-1][0] != "if" or stack[-1][1] is stack[-1][2][4]:
                    raise TemplateError(f"{where}: else without if")
                stack[-1] = ("if", stack[-1][2][4], stack[-1][2])
            elif kind in ("end repeat", "end if"):
                if stack[-1][0] != kind.split()[1]:
                    raise TemplateError(f"{where}: {kind} closes {stack[-1][0]}")
                stack.pop()
            else:
                body.append(["include", where, arg])
            i += 1
            continue
        if line.lstrip().startswith("/**"):  # a note for the template's reader
            while "*/" not in lines[i]:
                i += 1
                if i == len(lines):
                    raise TemplateError(f"{where}: unterminated note")
            i += 1
            continue
        body = stack[-1][1]
        if body and body[-1][0] == "text":
            body[-1][2].append(line)
        else:
            body.append(["text", where, [line]])
        i += 1
    if len(stack) > 1:
        raise TemplateError(f"{fname}: {stack[-1][0]} opened at {stack[-1][2][1]} is not closed")
    return root


def _split_args(text):
    args, depth, cur = [], 0, []
    for c in text:
        if c == "," and depth == 0:
            args.append("".join(cur))
            cur = []
            continue
        depth += c == "("
        depth -= c == ")"
        cur.append(c)
    args.append("".join(cur))
    return [a.strip(" ") for a in args]


def _at(where, text, j):
    """where (file:line of text's first line) for the line of text[j]."""
    fname, _, line = where.rpartition(":")
    return f"{fname}:{int(line) + text.count(chr(10), 0, j)}" if line.isdigit() else where


def substitute(text, lookup, where):
    """text with its placeholders replaced through lookup(name)."""
    out, i = [], 0
    while True:
        j = text.find("@", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        here = _at(where, text, j)
        m = _NAME.match(text, j + 1)
        if not m or m.end() >= len(text) or text[m.end()] not in "@(":
            raise TemplateError(f"{here}: stray @ in {text[j : j + 40]!r}")
        name, k = m.group(0), m.end()
        value = lookup(name, here)
        if isinstance(value, bool):
            raise TemplateError(f"{here}: @{name}@ is a condition, not text")
        value = substitute(str(value), lookup, here)
        if text[k] == "@":
            i = k + 1
        else:
            depth, p = 0, k
            while True:
                if p >= len(text):
                    raise TemplateError(f"{here}: @{name}(...)@ not closed")
                depth += text[p] == "("
                depth -= text[p] == ")"
                if depth == 0:
                    break
                p += 1
            if text[p + 1 : p + 2] != "@":
                raise TemplateError(f"{here}: @{name}(...) must end with )@")
            args = [substitute(a, lookup, here) for a in _split_args(text[k + 1 : p])]
            for n, a in enumerate(args):
                value = value.replace(f"{{{n}}}", a)
            if re.search(r"\{\d\}", value):
                raise TemplateError(f"{here}: @{name}@ needs more arguments than {len(args)}")
            i = p + 2
        out.append(value)


class Generator:
    def __init__(self, cpu_dir=CPU):
        self.cpu_dir = cpu_dir
        self.trees = {}
        self.used = []  # the templates read, in order

    def tree(self, name):
        if name not in self.trees:
            self.trees[name] = parse(os.path.join(self.cpu_dir, name))
            self.used.append(name)
        return self.trees[name]

    def expand(self, nodes, rows, out):
        def lookup(name, where="the generator"):
            for row in rows:
                if name in row:
                    return row[name]
            raise TemplateError(f"{where}: @{name}@ is not defined here")

        for node in nodes:
            kind, where = node[0], node[1]
            if kind == "text":
                fname, first = where.rsplit(":", 1)
                chunk, start = [], 0
                for n, line in enumerate(node[2] + [None]):
                    if line is not None and not _ALONE.match(line):
                        if not chunk:
                            start = n
                        chunk.append(line)
                        continue
                    if chunk:
                        at = f"{fname}:{int(first) + start}"
                        out.extend(substitute("\n".join(chunk), lookup, at).split("\n"))
                        chunk = []
                    if line is not None:
                        done = substitute(line, lookup, f"{fname}:{int(first) + n}")
                        if done.strip():
                            out.append(done)
            elif kind == "repeat":
                for row in self.rows(node[2], lookup, where):
                    self.expand(node[3], [row, *rows], out)
            elif kind == "if":
                cond = node[2].split()
                neg = cond[0] == "not"
                value = lookup(cond[-1], where)
                if not isinstance(value, bool) or len(cond) != 1 + neg:
                    raise TemplateError(f"{where}: if {node[2]}: not one boolean of the table")
                self.expand(node[3] if value != neg else node[4], rows, out)
            else:
                self.expand(self.tree(node[2]), rows, out)

    def rows(self, spec, lookup, where):
        if spec.startswith("#"):
            lists = {name: [v.strip() for v in values.split(",")] for name, values in _LIST.findall(spec)}
            if not lists or len({len(v) for v in lists.values()}) != 1:
                raise TemplateError(f"{where}: repeat {spec}: lists of one length needed")
            n = len(next(iter(lists.values())))
            return [{name: values[k] for name, values in lists.items()} for k in range(n)]
        if spec not in TABLES:
            raise TemplateError(f"{where}: no table {spec!r} (tools/gen_kernels.py TABLES)")
        return TABLES[spec](lookup)

    def generate(self):
        body = []
        self.expand(self.tree(TEMPLATE), [], body)
        others = ", ".join(self.used[1:])
        head = [
            "/*",
            f" * GENERATED by tools/gen_kernels.py from fastnorm/_cpu/{TEMPLATE}",
            f" * ({others}); do not edit.",
            " * Change the templates or the table in tools/gen_kernels.py, then run",
            " *     python tools/gen_kernels.py",
            " * (tests/test_generated_kernels.py fails while this file and the generator",
            " * disagree).  fn_kernels.c includes this file; setup.py compiles it once per",
            " * target.  Every variant is defined below under its own name.",
            " */",
            "/* clang-format off */",
        ]
        lines = []
        for line in head + body:  # trailing spaces and repeated blank lines dropped
            line = line.rstrip()
            if line or (lines and lines[-1]):
                lines.append(line)
        text = "\n".join(lines)
        return text.rstrip("\n") + "\n/* clang-format on */\n"


def generate(cpu_dir=CPU):
    """The text of fn_kernels_gen.c from the templates in cpu_dir."""
    return Generator(cpu_dir).generate()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out-dir", default=CPU, help="where to write fn_kernels_gen.c")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from what this writes")
    ap.add_argument("--list", action="store_true", help="print the (input, output) table")
    args = ap.parse_args(argv)
    if args.list:
        for i in TYPES:
            for o in OUTPUTS:
                e = table_entry(i, o)
                how = "direct" if (i, o) in DIRECT else "buffered"
                print(f"{i:>4} -> {o:<4} {how:<8} " + " ".join(e.values()))
        return 0
    try:
        text = generate()
    except TemplateError as e:
        print(f"gen_kernels: {e}", file=sys.stderr)
        return 2
    path = os.path.join(args.out_dir, OUTPUT)
    if args.check:
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == text
        except OSError:
            same = False
        if not same:
            print(f"gen_kernels: {path} is not what tools/gen_kernels.py writes; run it", file=sys.stderr)
            return 1
        return 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
