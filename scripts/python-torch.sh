#!/usr/bin/env bash
# Prints the path of a Python that can import torch: $PYTHON, python3 on PATH, then /usr/bin/python3
# (Debian's python3-torch). Exits 1 with a hint when there is none.
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import torch' >/dev/null 2>&1; then
    command -v "$candidate"
    exit 0
  fi
done
echo "no Python with torch found: run 'bash scripts/setup.sh' (installs python3-torch) or set PYTHON" >&2
exit 1
