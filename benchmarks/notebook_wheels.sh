#!/usr/bin/env bash
# Download, here, the wheels that run_notebooks.py needs on the GPU machine (no network there, no
# nbclient/nbformat/ipykernel/IPython installed): into .whl, for Python ${PY:-3.12} on manylinux x86_64.
# Only what that machine's image lacks (see the device library's KINDS.md package list); debugpy and
# jedi (optional for a kernel that only executes cells) are left out to keep the carry small (~7 MiB);
# ipywidgets is in: without it tqdm.auto warns "IProgress not found" in the executed notebooks.
# Usage: bash benchmarks/notebook_wheels.sh          then carry .whl (it is git-ignored via .git/info/exclude)
# (PY=3.11 DEST=/tmp/w fetches the same set for another Python into another folder, e.g. to try it here.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exclude=$(git -C "$root" rev-parse --path-format=absolute --git-path info/exclude)
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >> "$exclude"
py=${PY:-3.12}
dest=${DEST:-$root/.whl}
wheels=(nbclient==0.11.0 nbformat==5.11.1 ipykernel==7.4.0 jupyter_client==8.10.0 jupyter_core==5.9.1
        traitlets==5.16.1 pyzmq==27.3.0 tornado==6.6.1 comm==0.2.3 nest_asyncio2==1.7.4 matplotlib_inline==0.2.2
        ipython==9.18.1 ipython_pygments_lexers==1.1.1 prompt_toolkit==3.0.53 wcwidth==0.9.4 stack_data==0.6.3
        executing==2.3.0 asttokens==3.0.2 pure_eval==0.2.4 pexpect==4.9.0 ptyprocess==0.7.0 parso==0.8.7
        platformdirs==4.14.7 fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema_specifications==2025.9.1
        referencing==0.37.0 rpds_py==2026.9.1
        ipywidgets==8.1.9 widgetsnbextension==4.0.16 jupyterlab_widgets==3.0.17)  # the bars Colab shows
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$dest" "${wheels[@]}"
du -sh "$dest"
