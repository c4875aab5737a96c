# Shared by every scripts/<trainer>/*.sh; not run on its own.
#
# A trainer's script sets TRAINER (the registered name), CONFIG_DIR (the folder under
# configs/trainers/ that holds its configs), DEFAULT_CFG (a config file name without .yaml)
# and ZEROSHOT (1: evaluated, never trained), sources this file and calls one protocol
# function with its own arguments. Everything else about a run (epochs,
# batch size, context length, Proxy-FDA on or off) is in the config, so a variant is a
# different CFG argument.
#
# Environment:
#   DATA       dataset root (or pass --root DIR before the other arguments)
#   OUTPUT     output root (default: output)
#   SHOTS      shots per class for base2new/xd (default: 16); few_shot.sh takes it as an argument
#   PYTHON     the interpreter (default: python)
#   DRY_RUN=1  print the train.py command instead of running it
#
# Output layout (the peers'):
#   base2new  $OUTPUT/base2new/{train_base,test_new}/DATASET/shots_K/TRAINER/CFG/seedS
#   few-shot  $OUTPUT/DATASET/TRAINER/CFG_Kshots/seedS   (xd_train.sh: DATASET=imagenet)
#   xd and dg $OUTPUT/evaluation/TRAINER/CFG_Kshots/DATASET/seedS
#
# A run whose log already has its final result is skipped; an unfinished one is run again
# into the same directory, and train.py resumes it from its last checkpoint.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_PWD="$PWD"
PY="${PYTHON:-python}"
: "${TRAINER:?} ${CONFIG_DIR:?} ${DEFAULT_CFG:?} ${ZEROSHOT:?}"  # set by the calling script

# Cross-dataset: train on XD_SOURCE, evaluate on XD_TARGETS; domain generalization: the
# same model on DG_TARGETS. Names are files in configs/datasets/.
XD_SOURCE=imagenet
XD_TARGETS=(caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101)
DG_TARGETS=(imagenetv2 imagenet_sketch imagenet_a imagenet_r)

die() { echo "ERROR: $*" >&2; exit 1; }

_abspath() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER_PWD/$1" ;; esac; }

# _parse USAGE N_REQUIRED ARGS...: --root DIR anywhere, then N_REQUIRED positionals and an
# optional CFG. Sets POS (the positionals) and CFG.
_parse() {
    local usage="$1" n="$2"
    shift 2
    POS=()
    while (($#)); do
        case "$1" in
            --root) (($# >= 2)) || die "--root needs a directory"; DATA="$2"; shift 2 ;;
            --root=*) DATA="${1#--root=}"; shift ;;
            -h|--help) echo "usage: $0 [--root DATA_DIR] $usage"; exit 0 ;;
            -*) die "unknown option $1 (usage: $0 [--root DATA_DIR] $usage)" ;;
            *) POS+=("$1"); shift ;;
        esac
    done
    if ((${#POS[@]} < n || ${#POS[@]} > n + 1)); then
        echo "usage: $0 [--root DATA_DIR] $usage" >&2
        exit 2
    fi
    CFG="${POS[n]:-$DEFAULT_CFG}"
    CFG="${CFG%.yaml}"
    OUT="$(_abspath "${OUTPUT:-output}")"
    cd "$REPO"
}

_trainer_config() {
    local f="configs/trainers/$CONFIG_DIR/$CFG.yaml"
    [[ -f "$f" ]] || die "no config $f. Configs of $CONFIG_DIR: $(cd "configs/trainers/$CONFIG_DIR" 2>/dev/null && ls *.yaml 2>/dev/null | sed 's/\.yaml$//' | tr '\n' ' ')"
    echo "$f"
}

_dataset_config() {
    local f="configs/datasets/$1.yaml"
    [[ -f "$f" ]] || die "no dataset config $f. Datasets: $(cd configs/datasets && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')"
    echo "$f"
}

_data_root() {
    [[ -n "${DATA:-}" ]] || die "no dataset root: set DATA=/path/to/datasets or pass --root /path/to/datasets"
    local root
    root="$(_abspath "$DATA")"
    [[ -d "$root" ]] || die "dataset root $root does not exist (from DATA or --root)"
    echo "$root"
}

_load_epoch() {  # the config's last epoch: what base2new_test/xd_test evaluate
    "$PY" -m tools.config_value "$1" OPTIM.MAX_EPOCH
}

_finished() { "$PY" -m tools.logparse --finished "$1"; }

# _run DIR train.py-args...: skip a finished run, say when one resumes, run train.py.
_run() {
    local dir="$1"
    shift
    if _finished "$dir"; then
        echo "The results exist in $dir: skip this job (finished)"
        return 0
    fi
    if [[ -d "$dir" ]] && ls "$dir"/log.txt* >/dev/null 2>&1; then
        echo "Resume the unfinished run in $dir"
    else
        echo "Run this job and save the output to $dir"
    fi
    local cmd=("$PY" train.py --output-dir "$dir" "$@")
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        printf '%q ' "${cmd[@]}"
        echo
    else
        "${cmd[@]}"
    fi
}

# _need_model MODEL_DIR HINT: evaluation needs a finished training.
_need_model() {
    [[ "${DRY_RUN:-0}" == 1 ]] && return 0
    _finished "$1" || die "no finished training in $1; run $2 first"
}

# ---------------------------------------------------------------------------------------
# Protocols

base2new_train() {
    _parse "DATASET SEED [CFG]" 2 "$@"
    local dataset="${POS[0]}" seed="${POS[1]}" shots="${SHOTS:-16}"
    local cfgfile dsfile
    cfgfile="$(_trainer_config)"; dsfile="$(_dataset_config "$dataset")"
    local dir="$OUT/base2new/train_base/$dataset/shots_$shots/$TRAINER/$CFG/seed$seed"
    local eval=()
    [[ "$ZEROSHOT" == 1 ]] && eval=(--eval-only)
    _finished "$dir" || DATA="$(_data_root)"
    _run "$dir" --root "${DATA:-}" --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$dsfile" --config-file "$cfgfile" "${eval[@]}" \
        DATASET.NUM_SHOTS "$shots" DATASET.SUBSAMPLE_CLASSES base
}

base2new_test() {
    _parse "DATASET SEED [CFG]" 2 "$@"
    local dataset="${POS[0]}" seed="${POS[1]}" shots="${SHOTS:-16}"
    local cfgfile dsfile
    cfgfile="$(_trainer_config)"; dsfile="$(_dataset_config "$dataset")"
    local common="$dataset/shots_$shots/$TRAINER/$CFG/seed$seed"
    local model_dir="$OUT/base2new/train_base/$common" dir="$OUT/base2new/test_new/$common"
    local load=() epoch
    if ! _finished "$dir"; then
        DATA="$(_data_root)"
        if [[ "$ZEROSHOT" != 1 ]]; then
            _need_model "$model_dir" "base2new_train.sh $dataset $seed $CFG"
            epoch="$(_load_epoch "$cfgfile")"
            load=(--model-dir "$model_dir" --load-epoch "$epoch")
        fi
    fi
    _run "$dir" --root "${DATA:-}" --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$dsfile" --config-file "$cfgfile" "${load[@]}" --eval-only \
        DATASET.NUM_SHOTS "$shots" DATASET.SUBSAMPLE_CLASSES new
}

# Train on all classes of DATASET with SHOTS per class; the final test in the log is the result.
_few_shot_run() {
    local dataset="$1" shots="$2" seed="$3"
    local cfgfile dsfile
    cfgfile="$(_trainer_config)"; dsfile="$(_dataset_config "$dataset")"
    local dir="$OUT/$dataset/$TRAINER/${CFG}_${shots}shots/seed$seed"
    local eval=()
    [[ "$ZEROSHOT" == 1 ]] && eval=(--eval-only)
    _finished "$dir" || DATA="$(_data_root)"
    _run "$dir" --root "${DATA:-}" --seed "$seed" --trainer "$TRAINER" \
        --dataset-config-file "$dsfile" --config-file "$cfgfile" "${eval[@]}" \
        DATASET.NUM_SHOTS "$shots"
}

few_shot() {
    _parse "DATASET SHOTS SEED [CFG]" 3 "$@"
    _few_shot_run "${POS[0]}" "${POS[1]}" "${POS[2]}"
}

xd_train() {
    _parse "SEED [CFG]" 1 "$@"
    _few_shot_run "$XD_SOURCE" "${SHOTS:-16}" "${POS[0]}"
}

# _evaluate_transfer DATASET|all SEED TARGETS...: the XD_SOURCE model on other datasets.
_evaluate_transfer() {
    local dataset="$1" seed="$2"
    shift 2
    local targets=("$dataset")
    [[ "$dataset" == all ]] && targets=("$@")
    local shots="${SHOTS:-16}" cfgfile
    cfgfile="$(_trainer_config)"
    local model_dir="$OUT/$XD_SOURCE/$TRAINER/${CFG}_${shots}shots/seed$seed"
    local ds dsfile dir load epoch
    for ds in "${targets[@]}"; do
        dsfile="$(_dataset_config "$ds")"
        dir="$OUT/evaluation/$TRAINER/${CFG}_${shots}shots/$ds/seed$seed"
        load=()
        if ! _finished "$dir"; then
            DATA="$(_data_root)"
            if [[ "$ZEROSHOT" != 1 ]]; then
                _need_model "$model_dir" "xd_train.sh $seed $CFG"
                epoch="$(_load_epoch "$cfgfile")"
                load=(--model-dir "$model_dir" --load-epoch "$epoch")
            fi
        fi
        _run "$dir" --root "${DATA:-}" --seed "$seed" --trainer "$TRAINER" \
            --dataset-config-file "$dsfile" --config-file "$cfgfile" "${load[@]}" --eval-only
    done
}

xd_test() {
    _parse "DATASET|all SEED [CFG]" 2 "$@"
    _evaluate_transfer "${POS[0]}" "${POS[1]}" "${XD_TARGETS[@]}"
}

dg_test() {
    _parse "DATASET|all SEED [CFG]" 2 "$@"
    _evaluate_transfer "${POS[0]}" "${POS[1]}" "${DG_TARGETS[@]}"
}
