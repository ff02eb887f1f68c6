#!/usr/bin/env python3
"""The reference pages against the code: every top-level key the config
reader accepts (`sdpsd --list-keys`, with the modules of config/sdps.yaml)
is in sdps.yaml(5), README.md's settings table and docs/operations.md, and
sdps.yaml(5) lists no key the reader refuses; every subcommand of `sdps
--help` and every exit status the tool's code uses is in sdps(1); every
option of `sdpsd --help` is in sdpsd(8); sdps-modules(7), built from the
modules' README files, names every module and lints clean.

    tests/check_reference.py SOURCE_DIR BUILD_DIR    exit 1 and one line per gap
"""
import pathlib
import re
import shutil
import subprocess
import sys


def run(*args):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result.stdout


def mdoc_tags(page):
    """The words of every `.It Cm ...` line of an mdoc page."""
    words = set()
    for line in page.splitlines():
        if line.startswith(".It Cm "):
            words.update(re.findall(r"[a-z_]+", line[len(".It Cm "):]))
    return words


def readme_keys(readme):
    """The keys of README.md's table of top-level settings (its first column)."""
    section = readme.split("Top-level settings:", 1)[1]
    keys = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
        elif keys and not line.startswith("|"):
            break
    return keys


def main():
    source = pathlib.Path(sys.argv[1]).resolve()
    build = pathlib.Path(sys.argv[2]).resolve()
    sdpsd, sdps = build / "bin" / "sdpsd", build / "bin" / "sdps"
    problems = []

    # -- configuration keys
    keys = set(run(sdpsd, "--list-keys", "-c", source / "config" / "sdps.yaml").split())
    if not keys:
        problems.append("sdpsd --list-keys listed no key")
    yaml5 = (source / "man" / "sdps.yaml.5").read_text()
    documented = mdoc_tags(yaml5)
    readme = readme_keys((source / "README.md").read_text())
    operations = (source / "docs" / "operations.md").read_text()
    for key in sorted(keys):
        if key not in documented:
            problems.append(f"man/sdps.yaml.5 lacks the key '{key}' (an '.It Cm {key}' entry)")
        if key not in readme:
            problems.append(f"README.md's table of top-level settings lacks '{key}'")
        if f"`{key}`" not in operations and f"{key}:" not in operations:
            problems.append(f"docs/operations.md never mentions '{key}'")
    # Entries of the page's key lists that the reader does not accept.
    chain_entry = {"module", "name", "timeout"}
    for key in sorted(documented - keys - chain_entry):
        problems.append(f"man/sdps.yaml.5 describes '{key}', which the config reader does not accept")

    # -- the admin tool: subcommands and exit statuses
    sdps1 = (source / "man" / "sdps.1").read_text()
    cm_lines = [l[len(".It Cm "):] for l in sdps1.splitlines() if l.startswith(".It Cm ")]
    subcommands = set()
    for line in run(sdps, "--help").splitlines():
        m = re.match(r"^  ([a-z]+(?: [a-z]+)?)\b", line)
        if m:
            words = m.group(1).split()
            # "host add HOST", "deliver [--punt ...": the command's own words only.
            rest = line[2:].split()
            name = [w for w in rest[:len(words)] if re.fullmatch(r"[a-z]+", w)]
            subcommands.add(" ".join(name))
    if not subcommands:
        problems.append("sdps --help lists no subcommand")
    for sub in sorted(subcommands):
        if not any(l == sub or l.startswith(sub + " ") for l in cm_lines):
            problems.append(f"man/sdps.1 lacks the subcommand '{sub}' (an '.It Cm {sub}' entry)")
    sysexits = {m.group(1): int(m.group(2)) for m in re.finditer(
        r"#define\s+(EX_[A-Z]+)\s+(\d+)", pathlib.Path("/usr/include/sysexits.h").read_text())}
    used = set()
    for cpp in (source / "tools" / "sdps").glob("*.cpp"):
        used.update(re.findall(r"\b(EX_[A-Z]+)\b", cpp.read_text()))
    exit_section = sdps1.split(".Sh EXIT STATUS", 1)[1].split(".Sh ", 1)[0]
    listed = set(int(n) for n in re.findall(r"^\.It (\d+)$", exit_section, re.M))
    for name in sorted(used):
        if name not in sysexits:
            problems.append(f"tools/sdps uses {name}, which sysexits.h does not define")
        elif sysexits[name] not in listed:
            problems.append(f"man/sdps.1's EXIT STATUS lacks {sysexits[name]} ({name}, used by tools/sdps)")

    # -- the server's options
    sdpsd8 = (source / "man" / "sdpsd.8").read_text()
    for option in sorted(set(re.findall(r"^\s+(--[a-z-]+)", run(sdpsd, "--help"), re.M))):
        if f"Fl -{option[2:]}" not in sdpsd8:
            problems.append(f"man/sdpsd.8 lacks the option {option}")

    # -- the modules' page
    page = build / "man" / "sdps-modules.7"
    if not page.exists():
        problems.append(f"{page} was not built (target sdps_modules_man)")
    else:
        text = page.read_text()
        for so in sorted((build / "lib" / "sdps" / "modules").glob("*.so")):
            name = so.stem
            if name.startswith("fixture_"):
                continue
            if not re.search(rf"^\.SH \"[^\"]*\b{re.escape(name.upper())}\b", text, re.M):
                problems.append(f"sdps-modules(7) has no section for the module {name}")
        if shutil.which("mandoc"):
            lint = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", str(page)], capture_output=True,
                                  text=True)
            if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
                problems.append("sdps-modules(7) does not lint clean:\n" + lint.stdout + lint.stderr)

    for p in problems:
        print(p)
    print(f"{len(keys)} keys, {len(subcommands)} subcommands, {len(used)} exit statuses checked; "
          f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
