#!/usr/bin/env python3
"""Follows docs/writing-a-backend.md literally: writes every code block that
starts with a `file:` comment into a new crate outside the workspace (the
repository paths pointed at this checkout), and runs its tests, which run the
whole conformance suite. Usage: backend-from-docs.py REPO_ROOT WORK_DIR"""
import os
import re
import subprocess
import sys

root, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
doc = open(os.path.join(root, "docs", "writing-a-backend.md"), encoding="utf-8").read()
crate = os.path.join(work, "my-backend")
written = []
for lang, body in re.findall(r"```(\w+)\n(.*?)```", doc, re.S):
    first, _, rest = body.partition("\n")
    match = re.match(r"\s*(?://|#)\s*file:\s*(\S+)", first)
    if not match:
        continue
    path = os.path.join(crate, match.group(1))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # The doc's checkout sits beside the new crate; here it is this one.
    rest = rest.replace("../governance-persistence/", root + "/")
    with open(path, "w", encoding="utf-8") as out:
        out.write(rest)
    written.append(match.group(1))
print("backend-from-docs: wrote", ", ".join(written))
if not {"Cargo.toml", "src/lib.rs", "tests/conformance.rs"} <= set(written):
    sys.exit("backend-from-docs: the guide no longer holds a whole crate")
# The crate is outside the workspace: its own lock file and workspace root.
with open(os.path.join(crate, "Cargo.toml"), "a", encoding="utf-8") as manifest:
    manifest.write("\n[workspace]\n")
result = subprocess.run(["cargo", "test", "--quiet"], cwd=crate, capture_output=True, text=True)
sys.stdout.write(result.stdout[-3000:])
sys.stderr.write(result.stderr[-6000:])
passed = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", result.stdout))
if result.returncode != 0 or passed < 100:
    sys.exit(f"backend-from-docs: cargo test failed or ran too few cases ({passed} passed)")
print(f"backend-from-docs: {passed} tests passed")
