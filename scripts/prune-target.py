#!/usr/bin/env python3
"""Keeps a long-lived cargo target directory from filling the disk.

Every change to a crate links its test and function binaries anew under a new hash
(`deps/limits-885ed001095da55f`); cargo never deletes the old ones, so a target
directory that persists across commits grows by gigabytes a day. This removes,
for each executable name under `<target>/<profile>/deps`, every copy but the newest,
and the incremental caches when they are over a size. Libraries (`.rlib`, `.rmeta`)
are left alone: two feature sets of one crate legitimately live side by side.

    scripts/prune-target.py [TARGET_DIR]     # default: $CARGO_TARGET_DIR or ./target
"""

import os
import re
import shutil
import sys
from collections import defaultdict

HASHED = re.compile(r"^(?P<name>.+)-[0-9a-f]{16}$")
# Incremental caches help when editing one crate; past this size they are mostly stale.
INCREMENTAL_LIMIT = 8 * 1024**3


def size_of(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def superseded_executables(deps):
    groups = defaultdict(list)
    for entry in os.scandir(deps):
        if not entry.is_file(follow_symlinks=False):
            continue
        match = HASHED.match(entry.name)
        if match is None or not os.access(entry.path, os.X_OK):
            continue
        groups[match.group("name")].append((entry.stat().st_mtime, entry.path))
    for copies in groups.values():
        copies.sort()
        yield from (path for _mtime, path in copies[:-1])


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CARGO_TARGET_DIR", "target")
    if not os.path.isdir(target):
        return 0
    freed = 0
    profiles = [os.path.join(target, "debug")]
    profiles += [
        os.path.join(target, triple, "debug")
        for triple in os.listdir(target)
        if os.path.isdir(os.path.join(target, triple, "debug"))
    ]
    for profile in profiles:
        deps = os.path.join(profile, "deps")
        if os.path.isdir(deps):
            for path in superseded_executables(deps):
                freed += os.path.getsize(path)
                os.remove(path)
        incremental = os.path.join(profile, "incremental")
        if os.path.isdir(incremental):
            size = size_of(incremental)
            if size > INCREMENTAL_LIMIT:
                shutil.rmtree(incremental, ignore_errors=True)
                freed += size
    free = shutil.disk_usage(target).free
    print(
        f"prune-target: freed {freed / 1024**3:.1f} GiB of superseded builds; "
        f"{free / 1024**3:.1f} GiB free on the target's disk",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
