#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the project into it.
# CPU machines get torch==2.13.0, the CPU build: from PyTorch's CPU index when it can be reached,
# else from the default index (a local CPU wheel on the project's machines). Machines with an
# NVIDIA GPU get whatever TORCH_SPEC says (default: the index's newest torch).
# Settings: VENV (default .venv), TORCH_SPEC, PYTHON (default python3).
set -euo pipefail
venv=${VENV:-.venv}
stamp="$venv/.hffne-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"
if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$py" -m pip install "${TORCH_SPEC:-torch}"
  else
    cpu_index=https://download.pytorch.org/whl/cpu
    # reachable = an HTTP success within 5 s (Python's urllib: no curl needed; a proxy's 403 is no)
    if "$py" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$cpu_index/" 2>/dev/null; then
      "$py" -m pip install "${TORCH_SPEC:-torch==2.13.0}" --index-url "$cpu_index" --extra-index-url https://pypi.org/simple
    else
      "$py" -m pip install "${TORCH_SPEC:-torch==2.13.0}"
    fi
  fi
fi
"$py" -m pip install -e ".[dev]"
"$py" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (hffne)" >/dev/null
"$py" -c "import torch; print('torch', torch.__version__, '| CUDA build' if torch.version.cuda else '| CPU build')"
touch "$stamp"
