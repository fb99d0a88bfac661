#!/usr/bin/env bash
# The headline suite for several seeds on one many-core or GPU machine: every pipeline x seed is its own
# process against one stage cache (a stage that pipelines share is computed once; the others wait on its
# lock), then `launch.py -m seed=...` assembles each seed's suite from the cache and the sweep report
# aggregates. The same stage keys as `python launch.py -m seed=...`, in the time of the longest chain.
#
# Not for a 2-core laptop: the default suite took 1,087 s this way (JOBS=2, one thread per process) against
# 804 s for `python launch.py` (two threads, one stage at a time).
# On a GPU start CUDA MPS first (`nvidia-cuda-mps-control -d`) so that the processes share it:
#   EXP=gpu_long SEEDS=1,2,3 DEVICE=cuda OUT_DIR=multirun/gpu_long bench/suite_by_pipeline.sh
# EXTRA holds further overrides, space-separated: EXTRA="recipe.context.held_out_filler=false stage.rl.lr=2e-4"
# PIPELINES, space-separated, runs part of the suite (default: conf/pipeline/headline.yaml's members), e.g. the
# claims' pipelines without SFT(Mem+Ctx+Comp): PIPELINES="sft_comp sft_mem_ctx__rl_comp sft_comp__rl_comp"
set -euo pipefail
EXP=${EXP-cpu_long}  # set but empty: no preset, the default main job
SEEDS=${SEEDS:-1,2,3}
DEVICE=${DEVICE:-auto}
JOBS=${JOBS:-$(nproc)}
OUT_DIR=${OUT_DIR:-multirun/${EXP:-default}_by_pipeline}
CACHE=${CACHE:-${ATOMIC_COMP_CACHE:-$HOME/.cache/atomic_comp}}
PY=${PY:-python}
common=(device="$DEVICE" logger=none cache_dir="$CACHE")
if [ -n "$EXP" ]; then common+=(experiment="$EXP"); fi
read -r -a extra <<<"${EXTRA:-}"; common+=("${extra[@]}")

mkdir -p "$OUT_DIR/logs"
suite=()  # the assembling sweep's own overrides: the same members as the pipeline processes
if [ -n "${PIPELINES:-}" ]; then
  pipelines=$PIPELINES; read -r -a members <<<"$PIPELINES"; suite=("pipeline.members=[$(IFS=,; echo "${members[*]}")]")
else
  pipelines=$($PY -c "from omegaconf import OmegaConf; print(*OmegaConf.load('conf/pipeline/headline.yaml').members)")
fi
t0=$(date +%s)
one() {  # one pipeline of one seed; its log beside the others
  $PY launch.py "${common[@]}" seed="$1" pipeline="$2" threads=1 hydra.run.dir="$OUT_DIR/pipelines/seed_$1/$2" \
    >"$OUT_DIR/logs/seed_$1-$2.log" 2>&1 && echo "  done: seed=$1 $2 ($(($(date +%s) - t0)) s)" || echo "  FAILED: seed=$1 $2"
}
export -f one; export PY OUT_DIR t0; export COMMON="${common[*]}"
for s in ${SEEDS//,/ }; do for p in $pipelines; do echo "$s $p"; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'common=($COMMON); one "$@"' _
echo "pipelines: $(($(date +%s) - t0)) s"
$PY launch.py -m "${common[@]}" ${suite[@]+"${suite[@]}"} seed="$SEEDS" hydra.sweep.dir="$OUT_DIR/suite" >"$OUT_DIR/logs/suite.log" 2>&1
$PY -m atomic_comp.report "$OUT_DIR/suite"
echo "total: $(($(date +%s) - t0)) s"
