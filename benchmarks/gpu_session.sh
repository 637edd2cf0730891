#!/bin/bash
# All the GPU work of one session, in about 9 minutes, for the lent device machine.
#
# The machine has PyTorch, torch-geometric, scikit-learn and pandas but not pymatgen,
# skorch or pooch, and it cannot download. Prepare here, once per checkout:
#
#   bash benchmarks/gpu_session.sh --prepare   # wheels into .whl/, data into .gpu_data/
#
# (both folders are listed in .git/info/exclude), then run it there through the device
# tool, carrying both:  command "bash benchmarks/gpu_session.sh", carry [".whl", ".gpu_data"],
# timeout_s 600. Each stage has its own time limit (520 s together) and log; the logs and
# docs/benchmarks.md (where the benchmark scripts write their tables) come back in $OUT.
# Merge the new sections of that docs/benchmarks.md into the checkout's by hand.
#
# Stages (STAGES picks some, in order): cuda_tests (the tests marked gpu), alignn_speed
# (ALIGNN and CGCNN throughput and memory per batch, issue 10), alignn_accuracy (the
# published ALIGNN on the MP 20/10/70 split for the epochs that fit ACCURACY_MINUTES).
# A dry run on the CPU with tiny sizes:
#
#   DEVICE=cpu STAGES="cuda_tests alignn_speed" SPEED_ARGS="--n 64 --batches 2 \
#       --skip-published --threads 1" bash benchmarks/gpu_session.sh
set -u
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    # the versions of this environment (the README's test set-up), for Python 3.12 there
    pins=$(python3 -c "from importlib.metadata import version
names = 'pymatgen pymatgen-core monty spglib skorch pooch platformdirs ruamel.yaml orjson'
names += ' palettable uncertainties chgnet ase'
print(' '.join(f'{name}=={version(name)}' for name in names.split()))") || exit 1
    # shellcheck disable=SC2086
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins || exit 1
    # the staged data home (about 18 MB) without the authors' reference weights
    rm -rf .gpu_data
    cp -r "${SKCRYSTAL_DATA:-../shared/data}" .gpu_data && rm -rf .gpu_data/reference_weights
    grep -qx "/.whl/" .git/info/exclude || echo "/.whl/" >> .git/info/exclude
    grep -qx "/.gpu_data/" .git/info/exclude || echo "/.gpu_data/" >> .git/info/exclude
    du -sh .whl .gpu_data
    exit 0
fi

OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import pymatgen.core, skorch, pooch" 2> /dev/null; then  # the device
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
[ -d .gpu_data ] && export SKCRYSTAL_DATA="$PWD/.gpu_data"
DEVICE=${DEVICE:-cuda}
STAGES=${STAGES:-cuda_tests alignn_speed alignn_accuracy}
SPEED_ARGS=${SPEED_ARGS:---n 512 --batches 6 --jobs 16 --threads 8}
ACCURACY_MINUTES=${ACCURACY_MINUTES:-3}
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

run_stage() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s), at ${SECONDS} s"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "== $name: exit $?, at ${SECONDS} s"
    tail -n 5 "$OUT/$name.log"
}

for stage in $STAGES; do
    case $stage in
        cuda_tests) run_stage cuda_tests 120 python3 -m pytest -q -m gpu tests ;;
        alignn_speed)
            # shellcheck disable=SC2086
            run_stage alignn_speed 100 python3 benchmarks/alignn_bench.py speed --device "$DEVICE" \
                $SPEED_ARGS ;;
        alignn_accuracy)
            run_stage alignn_accuracy 300 python3 benchmarks/alignn_bench.py accuracy \
                --device "$DEVICE" --target e_form --budget "$ACCURACY_MINUTES" --jobs 16 \
                --threads 8 ;;
        *) echo "unknown stage $stage" >&2; exit 2 ;;
    esac
done
cp docs/benchmarks.md "$OUT/"
echo "done in ${SECONDS} s"
