#!/usr/bin/env python3
"""Compiles every C++ block of docs/modules.md against include/ (each block
is a whole translation unit, as a module author would paste it), so the
page's examples cannot drift from the headers.

    tests/check_module_docs.py SOURCE_DIR CXX    exit 1 on the first block that does not compile
"""
import pathlib
import re
import subprocess
import sys
import tempfile


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    cxx = sys.argv[2] if len(sys.argv) > 2 else "c++"
    page = (root / "docs" / "modules.md").read_text()
    blocks = re.findall(r"^```cpp\n(.*?)^```", page, re.S | re.M)
    if not blocks:
        print("docs/modules.md has no C++ block")
        return 1
    failed = 0
    with tempfile.TemporaryDirectory(prefix="sdps-docs-") as tmp:
        for n, code in enumerate(blocks, 1):
            source = pathlib.Path(tmp) / f"block{n}.cpp"
            source.write_text(code)
            result = subprocess.run([cxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                                     "-I", str(root / "include"), str(source)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                failed += 1
                first = code.strip().splitlines()[0] if code.strip() else "(empty)"
                print(f"docs/modules.md C++ block {n} ({first!r}) does not compile:\n{result.stderr}")
    print(f"{len(blocks) - failed} of {len(blocks)} C++ blocks of docs/modules.md compile")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
