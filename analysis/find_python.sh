#!/usr/bin/env bash
# Prints the path of a python3 that can import matplotlib (Debian's first), or explains how to get one.
set -u
# Debian's python3-matplotlib installs into /usr/bin/python3's site-packages; a python3 earlier on PATH
# (pyenv, a venv) usually lacks it and no package index is reachable, so try the system one first.
candidates=(/usr/bin/python3)
if on_path=$(command -v python3 2>/dev/null); then
  candidates+=("$on_path")
fi
for py in "${candidates[@]}"; do
  if [ -x "$py" ] && "$py" -c 'import matplotlib, numpy' >/dev/null 2>&1; then
    echo "$py"
    exit 0
  fi
done
echo "find_python.sh: no python3 with matplotlib found (tried: ${candidates[*]});" \
  "install Debian's package: apt-get install python3-matplotlib" >&2
exit 1
