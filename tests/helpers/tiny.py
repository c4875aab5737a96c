"""Shared helpers for tests: tiny CLIP weights, a generated dataset, train.py runs."""
import io
import os
import os.path as osp
import subprocess
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = "tiny-vit-quickgelu"
#: Seconds after which a test gives up on a subprocess (or a wait) as hung. Not a bound on
#: speed: no test asserts how long anything takes, since a loaded machine can be many times
#: slower (a tiny train.py run: ~10 s alone, minutes at a load of 20 on two cores).
HANG_GUARD = 1800
#: The engine the suite runs under, handed to its subprocesses (train.py, the scripts).
ENGINE = os.environ.get("DASSL_ENGINE", "builtin")


def tiny_clip(seed=0, name=TINY):
    """A randomly initialised tiny open_clip CLIP, the same for the same seed."""
    import open_clip

    import clip_backbone  # noqa: F401  (registers the tiny configs)

    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None).eval()


def write_openai_state_dict(path, seed=0, name=TINY):
    """Save a tiny CLIP as a plain OpenAI-format state dict (same keys as OpenAI's)."""
    model = tiny_clip(seed, name)
    torch.save(model.state_dict(), path)
    return model


def make_toy_dataset(root, classes=6, train_per_class=8, test_per_class=4, seed=0):
    subprocess.run(
        [sys.executable, "-m", "datasets.make_toy_dataset", "--out", osp.join(root, "toy"),
         "--classes", str(classes), "--train-per-class", str(train_per_class),
         "--test-per-class", str(test_per_class), "--seed", str(seed)],
        cwd=REPO, check=True, capture_output=True,
    )
    return root


def train_args(root, output_dir, trainer="CoOp", config="configs/trainers/CoOp/tiny_ctxv1.yaml",
               seed=1, extra=()):
    return [
        "--root", str(root), "--seed", str(seed), "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/image_folder.yaml",
        "--config-file", config, "--output-dir", str(output_dir), *extra,
    ]


def run_train(args, script="train.py", env=None, check=True):
    """Run train.py (or a helper script taking the same arguments) in a subprocess."""
    full_env = dict(os.environ, DASSL_ENGINE=ENGINE, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, script, *map(str, args)], cwd=REPO, env=full_env,
        capture_output=True, text=True, timeout=HANG_GUARD,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def read_log(output_dir, latest=False):
    """log.txt, or with latest=True the newest log (a re-run into the same folder
    writes log.txt-<timestamp>, as Dassl does)."""
    name = "log.txt"
    if latest:
        name = max((f for f in os.listdir(output_dir) if f.startswith("log.txt")),
                   key=lambda f: osp.getmtime(osp.join(output_dir, f)))
    with open(osp.join(output_dir, name)) as f:
        return f.read()


def close_log_only(tee):
    """Close the log file of a run's stdout tee, not the console it writes through.

    Upstream Dassl's ``Logger.close()`` closes its console too, and its ``__del__`` calls
    ``close()``: in this process that console is pytest's capture, and every later test would
    find it closed. The tee is given a stand-in console to close instead.
    """
    log = getattr(tee, "file", None)
    if log is not None and not log.closed:
        log.close()
    tee.console = io.StringIO()


class StopAfterEpoch(Exception):
    """Raised by ``train_in_process(stop_after_epoch=N)`` once epoch N is checkpointed."""


def train_in_process(args, env=None, stop_after_epoch=None):
    """train.py's ``cli`` in this process, without the seconds a fresh interpreter spends
    importing torch; returns its exit code (3 when stopped as a killed job would be, right
    after epoch ``stop_after_epoch`` and its checkpoint). The output goes to the run's log."""
    import train
    from dassl_compat import TrainerX

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as run_train's OMP_NUM_THREADS=1: two cores, shared
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    after_epoch, console = TrainerX.after_epoch, sys.stdout

    def after_epoch_then_stop(self):
        after_epoch(self)
        if self.epoch + 1 == stop_after_epoch:
            raise StopAfterEpoch

    TrainerX.after_epoch = after_epoch_then_stop
    try:
        return train.cli([str(a) for a in args])
    except StopAfterEpoch:
        return 3
    finally:
        TrainerX.after_epoch = after_epoch
        torch.set_num_threads(threads)
        if sys.stdout is not console:  # the run's log tee
            tee, sys.stdout = sys.stdout, console
            close_log_only(tee)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
