"""Prints the directory of an installed Python package without importing (running) it.

    python scripts/package_dir.py NAME

Used by scripts/models.sh and scripts/bench-speech.sh to find the model packages' files.
"""

import importlib.util
import sys

if len(sys.argv) != 2:
    sys.exit("usage: package_dir.py NAME")
spec = importlib.util.find_spec(sys.argv[1])
if spec is None or not spec.submodule_search_locations:
    sys.exit(f"package {sys.argv[1]} is not installed: run scripts/models.sh")
print(spec.submodule_search_locations[0])
