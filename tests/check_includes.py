#!/usr/bin/env python3
"""Fails when a source file includes a header it may not reach.

The layout rule (docs/modules.md): a module includes only include/sdps/
(the public API), lib/ and its own folder; a lib/ library only include/sdps/
and lib/; the admin tool (tools/) only include/sdps/, lib/ and its own
folder (no module, and not the server: it reads configs through
lib/config); the core no module or tool (it uses lib/ as everything else
does). Unit tests (files under a tests/ folder) may also use
tests/support/, the core, and other modules' headers to build whole
chains.

An include names a file of this tree when some file's path ends with it
("spoolstore/store.hpp", "lock.hpp"); includes that name no file here
(system and third-party headers) are not checked.

    tests/check_includes.py [SOURCE_DIR]    exit 1 and one line per offence
"""
import pathlib
import re
import sys

SOURCE_SUFFIXES = {".hpp", ".h", ".cpp", ".cc", ".ipp"}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')


def area(path):
    """The part of the tree a file belongs to: modules/NAME (modules/spool/NAME), lib/NAME, or a top-level folder."""
    parts = path.parts
    if parts[:2] == ("modules", "spool") and len(parts) > 3:
        return f"modules/spool/{parts[2]}"  # each spool module is its own area
    if parts[0] in ("modules", "lib") and len(parts) > 2:
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def allowed(source):
    """Areas (exact names, or prefixes ending in '/') that `source` may include from."""
    own = area(source)
    is_test = "tests" in source.parts[:-1]
    if own.startswith("modules/"):
        ok = {own, "include", "lib/"}
    elif own.startswith("lib/"):
        ok = {own, "include", "lib/"}
    elif own == "tools":
        ok = {"tools", "include", "lib/"}
    elif own == "core":
        ok = {"core", "include", "lib/"}
    else:
        return None  # examples, bench, tests/: not ruled here
    if is_test:
        ok |= {"tests", "core", "modules/"}
    return ok


def permitted(target_area, ok):
    return any(target_area == a or (a.endswith("/") and target_area.startswith(a)) for a in ok)


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if rel.parts[0].startswith((".", "build")) or p.suffix not in SOURCE_SUFFIXES or not p.is_file():
            continue
        files.append(rel)
    by_suffix = {}
    for f in files:
        for i in range(len(f.parts)):
            by_suffix.setdefault("/".join(f.parts[i:]), []).append(f)

    offences = []
    for source in sorted(files):
        ok = allowed(source)
        if ok is None:
            continue
        for number, line in enumerate((root / source).read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            targets = by_suffix.get(m.group(1).lstrip("./"), [])
            if not targets:
                continue
            areas = sorted({area(t) for t in targets})
            if not any(permitted(a, ok) for a in areas):
                offences.append(f"{source}:{number}: #include {m.group(1)} reaches {', '.join(areas)}")
    for o in offences:
        print(o)
    if offences:
        print(f"{len(offences)} include(s) break the layout rule (docs/modules.md)")
        return 1
    print(f"include rule holds in {len(files)} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
