# Shared by every scripts/<trainer>/<protocol>.sh, which source it with their protocol and
# trainer: the protocols are written once, in tools/protocol.py (configs per trainer, dataset
# lists, output layout, the train.py arguments of each step, skip finished / resume
# unfinished runs). Environment: DATA, OUTPUT, SHOTS, PYTHON, DRY_RUN (see its --help).
set -euo pipefail
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHONPATH="$_repo${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m tools.protocol "$@"
