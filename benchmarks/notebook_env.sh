# Sourced by the GPU notebook scripts (gpu_notebooks.sh, gpu_budget_study.sh) with $root set to the
# repository: offline switches for the hub, and nbclient/nbformat/ipykernel importable. The GPU
# machine lacks them: they are installed from the wheels in .whl (bash benchmarks/notebook_wheels.sh
# where pip works, then carry .whl) into /tmp/site, or taken from /tmp/site when an earlier call on the
# same warm machine installed them there.
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
notebook_tools="import nbclient, nbformat, ipykernel, jupyter_client"
if ! python3 -c "$notebook_tools" 2>/dev/null; then
  if ! PYTHONPATH=/tmp/site python3 -c "$notebook_tools" 2>/dev/null; then
    if ! compgen -G "$root/.whl/*.whl" >/dev/null; then
      echo "nbclient/nbformat/ipykernel are missing and .whl holds no wheels: run bash benchmarks/notebook_wheels.sh" \
           "where pip works and carry .whl" >&2
      exit 1
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$root"/.whl/*.whl
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

model_short_name() {  # a study name's model part: minilm, mpnet, or the hub id's last part, lower case
  case "$1" in
    *MiniLM*) echo minilm ;;
    *mpnet*) echo mpnet ;;
    *) basename "$1" | tr '[:upper:]' '[:lower:]' ;;
  esac
}
