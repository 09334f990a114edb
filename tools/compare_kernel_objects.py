"""Compare the machine code of two builds of the kernel objects, function by function.

    python tools/compare_kernel_objects.py OLD_DIR NEW_DIR [-v]

Each directory holds one kernel object per target: the fn_kernels.o files
that setup.py compiles (build/temp.*/fn_<target>/.../fn_kernels.o), found
recursively, the target named by the nearest fn_<target> (else the enclosing)
folder.  For every target present in both, each function of the old object
(every function symbol, aliases included) is disassembled with
`objdump -d -r --no-show-raw-insn`, normalized so that only what the code
does remains:

  - instruction addresses dropped; branch targets inside the function become
    offsets from its start, targets elsewhere the name of the symbol;
  - objdump's comments (the unrelocated address of a RIP-relative operand)
    dropped;
  - relocations kept, with a constant-pool label (.LCn) replaced by the bytes
    it labels and a section-relative one (.data.rel.ro.local+0x40) by the
    symbol at that place, so the numbering and placement of constants and
    descriptors do not count, their contents and names do;

and compared with the new object's function of the same name.  The data
objects (the dispatch table fn_target_<target>, the buffered pairs'
descriptors, the backward table) are compared the same way: their bytes and
what each relocation in them names (a function, a string).  Prints per target
the functions and data objects identical, differing and missing (with -v, a
diff of each differing one).  Exit status 1 if anything differs or is missing.
"""

import argparse
import bisect
import collections
import difflib
import os
import re
import subprocess
import sys

_INSN = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")
_RELOC = re.compile(r"^\s*([0-9a-f]+): (R_\S+)\s+(\S+)$")
_SECTION = re.compile(r"^Disassembly of section (\S+):$")
_TARGET = re.compile(r"\b[0-9a-f]+ <([^>+]+)(\+0x[0-9a-f]+)?>")
_SYMREF = re.compile(r"^([^+-]+)([+-]0x[0-9a-f]+)?$")


def _run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def find_objects(root):
    """{target: path} of the fn_kernels.o files under root."""
    found = {}
    for d, _, files in os.walk(root):
        if "fn_kernels.o" not in files:
            continue
        parts = os.path.relpath(d, root).split(os.sep)
        named = [p[3:] for p in parts if p.startswith("fn_")]
        target = named[-1] if named else (parts[-1] if parts[-1] != "." else os.path.basename(root))
        found[target] = os.path.join(d, "fn_kernels.o")
    return found


class ObjectCode:
    """The symbols, section contents and disassembly of one object file."""

    def __init__(self, path):
        self.path = path
        self.funcs = {}  # name -> (section, start, size)
        self.objects = {}  # data objects: name -> (section, start, size)
        self.syms = collections.defaultdict(list)  # section -> sorted [(value, size, name)]
        self.labels = {}  # name -> (section, value)
        for line in _run("objdump", "-t", path).splitlines():
            m = re.match(r"^([0-9a-f]+) (.{7}) (\S+)\s+([0-9a-f]+) (.+)$", line)
            if not m:
                continue
            value, flags, section, size, name = m.groups()
            value, size = int(value, 16), int(size, 16)
            if "d" in flags[5:7] or "f" in flags[5:7]:  # section and file symbols
                continue
            self.labels[name] = (section, value)
            self.syms[section].append((value, size, name))
            if "F" in flags:
                self.funcs[name] = (section, value, size)
            elif "O" in flags:
                self.objects[name] = (section, value, size)
        for lst in self.syms.values():
            lst.sort()
        self._data = {}
        self.code = collections.defaultdict(list)  # section -> [(addr, text)], in address order
        section = None
        for line in _run("objdump", "-d", "-r", "--no-show-raw-insn", path).splitlines():
            m = _SECTION.match(line)
            if m:
                section = m.group(1)
                continue
            m = _RELOC.match(line)
            if m and section:
                self.code[section].append((int(m.group(1), 16), "reloc " + m.group(2) + " " + m.group(3)))
                continue
            m = _INSN.match(line)
            if m and section:
                self.code[section].append((int(m.group(1), 16), m.group(2)))

    def section_bytes(self, section):
        if section not in self._data:
            data = bytearray()
            for line in _run("objdump", "-s", "-j", section, self.path).splitlines():
                m = re.match(r"^ ([0-9a-f]{4,}) ((?:[0-9a-f]{2,8} ){1,4})", line + " ")
                if m:
                    off = int(m.group(1), 16)
                    chunk = bytes.fromhex(m.group(2).replace(" ", ""))
                    data[off : off + len(chunk)] = chunk
            self._data[section] = bytes(data)
        return self._data[section]

    def constant(self, name):
        """The bytes a constant-pool label stands for: up to the next label (at most 64)."""
        section, value = self.labels[name]
        data = self.section_bytes(section)
        ends = [v for v, _, _ in self.syms[section] if v > value] + [len(data), value + 64]
        return data[value : min(ends)].hex()

    def symbol_at(self, section, off):
        """The object symbol of section that holds offset off (a relocation's
        addend may point a few bytes before or after an operand's start); a
        string literal's text."""
        if section.startswith(".rodata.str"):
            data = self.section_bytes(section)
            return repr(data[off : data.index(b"\0", off)].decode("latin-1"))
        lst = self.syms.get(section, [])
        exact = sorted(name for value, _, name in lst if value == off)
        if exact:
            return "=".join(exact)
        for probe in (off, off + 4, off + 8):
            i = bisect.bisect_right(lst, (probe, float("inf"), "")) - 1
            if i >= 0:
                value, size, name = lst[i]
                if value <= probe < value + max(size, 1):
                    return f"{name}{off - value:+#x}"
        return f"{section}+?"

    def reloc_target(self, ref):
        m = _SYMREF.match(ref)
        if not m:
            return ref
        sym, addend = m.group(1), m.group(2) or ""
        off = int(addend.replace("0x", ""), 16) if addend else 0
        if sym.startswith(".LC") and sym in self.labels:
            return f".LC[{self.constant(sym)}]{addend}"
        if sym.startswith("."):  # a section: name the symbol at that place
            return self.symbol_at(sym, off)
        return ref

    def data(self, name):
        """The bytes of data object name and the relocations in it, by offset."""
        section, start, size = self.objects[name]
        if not hasattr(self, "_relocs"):
            self._relocs = collections.defaultdict(list)
            sec = None
            for line in _run("objdump", "-r", self.path).splitlines():
                m = re.match(r"^RELOCATION RECORDS FOR \[(.+)\]:$", line)
                if m:
                    sec = m.group(1)
                    continue
                m = re.match(r"^([0-9a-f]{8,}) (\S+)\s+(\S+)$", line)
                if m and sec:
                    self._relocs[sec].append((int(m.group(1), 16), m.group(2), m.group(3)))
        out = []
        if section != "*COM*" and not section.startswith(".bss"):
            out.append(self.section_bytes(section)[start : start + size].hex())
        for off, kind, ref in self._relocs.get(section, []):
            if start <= off < start + size:
                out.append(f"+{off - start:#x} {kind} {self.reloc_target(ref)}")
        return out

    def function(self, name):
        """The normalized instruction lines of function name."""
        section, start, size = self.funcs[name]
        out = []
        for addr, text in self.code[section]:
            if addr < start or addr >= start + size:
                continue
            if text.startswith("reloc "):
                _, kind, ref = text.split(" ", 2)
                out.append(f"    reloc {kind} {self.reloc_target(ref)}")
                continue
            text = text.split("#")[0].rstrip()

            def target(m):
                sym, off = m.group(1), m.group(2) or ""
                if sym == name:
                    return f"<.{off or '+0x0'}>"
                return f"<{sym}{off}>"

            out.append(re.sub(r"\s+", " ", _TARGET.sub(target, text)))
        return out


def compare(old_path, new_path, verbose):
    old, new = ObjectCode(old_path), ObjectCode(new_path)
    same, differ, missing = [], [], []
    for name in sorted(old.funcs):
        if name not in new.funcs:
            missing.append(name)
            continue
        a, b = old.function(name), new.function(name)
        if a == b:
            same.append(name)
        else:
            differ.append((name, a, b))
    extra = sorted(set(new.funcs) - set(old.funcs))
    dsame, ddiffer = [], []
    for name in sorted(old.objects):
        if name not in new.objects:
            missing.append(name)
            continue
        a, b = old.data(name), new.data(name)
        (dsame if a == b else ddiffer).append((name, a, b))
    extra += sorted(set(new.objects) - set(old.objects))
    return same, differ, missing, extra, dsame, ddiffer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old_dir")
    ap.add_argument("new_dir")
    ap.add_argument("-v", action="store_true", help="print a diff of each differing function")
    args = ap.parse_args(argv)
    olds, news = find_objects(args.old_dir), find_objects(args.new_dir)
    if not olds or not news:
        print("compare_kernel_objects: no fn_kernels.o under", args.old_dir if not olds else args.new_dir)
        return 2
    bad = False
    for target in sorted(set(olds) | set(news)):
        if target not in olds or target not in news:
            print(f"{target}: only in {'old' if target in olds else 'new'}")
            bad = True
            continue
        same, differ, missing, extra, dsame, ddiffer = compare(olds[target], news[target], args.v)
        print(
            f"{target}: {len(same)} functions identical, {len(differ)} differing; "
            f"{len(dsame)} data objects identical, {len(ddiffer)} differing; {len(missing)} missing"
            + (f", {len(extra)} only in new" if extra else "")
        )
        for name, a, b in differ + ddiffer:
            print(f"  differs: {name} ({len(a)} -> {len(b)} lines)")
            if args.v:
                for line in difflib.unified_diff(a, b, "old", "new", lineterm="", n=2):
                    print("    " + line)
        for name in missing:
            print(f"  missing: {name}")
        for name in extra:
            print(f"  only in new: {name}")
        bad = bad or bool(differ or ddiffer or missing)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
