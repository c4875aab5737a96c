"""The image-feature cache of frozen image towers (trainers/feature_cache.py): an evaluation
that reads it gives the uncached logits, accuracy and log without decoding an image; any
change of what determines the features misses it; a bad file is set aside with one warning
and recomputed; a cache that cannot be written costs one warning; and a learner whose image
features are learned never reaches a cache file."""
import os
import re
import subprocess
import sys

import pytest
import torch

from tests.helpers.tiny import REPO, make_toy_dataset, train_args, write_openai_state_dict
from trainers import feature_cache

CONFIGS = {
    "ZeroshotCLIP": "configs/trainers/CoOp/tiny_ctxv1.yaml",
    "CoOp": "configs/trainers/CoOp/tiny_ctxv1.yaml",
    "CoCoOp": "configs/trainers/CoCoOp/tiny_ctxv1.yaml",
    "KgCoOp": "configs/trainers/KgCoOp/tiny_ctxv1.yaml",
    "IVLP": "configs/trainers/IVLP/tiny_2+2ctx.yaml",
    "MaPLe": "configs/trainers/MaPLe/tiny_2ctx.yaml",
    "PromptSRC": "configs/trainers/PromptSRC/tiny_4+4ctx.yaml",
}
LANGUAGE_ONLY = ["TRAINER.IVLP.PROMPT_DEPTH_VISION", "0"]
FROZEN = {"ZeroshotCLIP": [], "CoOp": [], "CoCoOp": [], "KgCoOp": [],
          "IVLP language-only": LANGUAGE_ONLY}
CACHE_LINE = re.compile(r"^Image features of the \*\w+\* set: (from|saved to) the feature cache")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_toy_dataset(str(root), classes=6, train_per_class=2, test_per_class=4)
    weights = {seed: str(root / f"weights{seed}.pt") for seed in (0, 1)}
    for seed, path in weights.items():
        write_openai_state_dict(path, seed)
    return root, weights


def build(data, tmp_path, trainer, cache, opts=(), weights_seed=0):
    """A trainer built as train.py builds it, with the tiny configs and local weights;
    ``cache``: the cache folder, or None for TEST.FEATURE_CACHE False."""
    from dassl_compat import build_trainer
    from run_config import build_parser, setup_cfg

    root, weights = data
    name = trainer.split()[0]
    cache_opts = ["TEST.FEATURE_CACHE", "False"] if cache is None else \
        ["TEST.FEATURE_CACHE_DIR", str(cache)]
    args = train_args(root, tmp_path / "out", trainer=name, config=CONFIGS[name], extra=[
        "MODEL.BACKBONE.NAME", weights[weights_seed], "MODEL.BACKBONE.PRETRAINED", "",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", *cache_opts, *opts])
    torch.manual_seed(0)  # the same prompt initialisation for every build
    return build_trainer(setup_cfg(build_parser().parse_args(args)))


def set_cache(trainer, cache):
    trainer.cfg.defrost()
    trainer.cfg.TEST.FEATURE_CACHE = cache is not None
    if cache is not None:
        trainer.cfg.TEST.FEATURE_CACHE_DIR = str(cache)
    trainer.cfg.freeze()


def evaluate(trainer, capsys, monkeypatch):
    """One ``trainer.test()``: (accuracy, logits, printed lines, images decoded)."""
    logits, decoded = [], []
    process = trainer.evaluator.process
    monkeypatch.setattr(trainer.evaluator, "process",
                        lambda mo, gt: (logits.append(mo.detach().clone()), process(mo, gt)))
    wrapper = type(trainer.test_loader.dataset)
    getitem = wrapper.__getitem__
    monkeypatch.setattr(wrapper, "__getitem__",
                        lambda self, i: (decoded.append(i), getitem(self, i))[1])
    capsys.readouterr()
    accuracy = trainer.test()
    out = capsys.readouterr().out.splitlines()
    monkeypatch.undo()
    return accuracy, torch.cat(logits), out, len(decoded)


def without_cache_lines(lines):
    return [line for line in lines if not CACHE_LINE.match(line)]


def cache_files(folder):
    return sorted(p.name for p in folder.glob("*.pt")) if folder.exists() else []


# ------------------------------------------------------------------ the statement
@pytest.mark.parametrize("trainer,frozen", [
    ("ZeroshotCLIP", True), ("CoOp", True), ("CoCoOp", True), ("KgCoOp", True),
    ("IVLP language-only", True), ("IVLP", False), ("MaPLe", False), ("PromptSRC", False)])
def test_each_learner_states_whether_its_image_features_are_frozen(data, tmp_path, trainer,
                                                                  frozen):
    t = build(data, tmp_path, trainer, tmp_path / "cache", FROZEN.get(trainer, []))
    assert t.image_features_frozen() is frozen
    assert feature_cache.frozen_image_tower(t) is frozen


# ------------------------------------------------------------------ exact
@pytest.mark.parametrize("trainer", list(FROZEN))
def test_cached_evaluation_gives_the_uncached_logits_accuracy_and_log(
        data, tmp_path, capsys, monkeypatch, trainer):
    cache = tmp_path / "cache"
    t = build(data, tmp_path, trainer, None, FROZEN[trainer])
    acc, logits, log, decoded = evaluate(t, capsys, monkeypatch)
    assert decoded == 24 and not cache_files(cache)

    set_cache(t, cache)
    acc_fill, logits_fill, log_fill, decoded_fill = evaluate(t, capsys, monkeypatch)
    assert decoded_fill == 24 and len(cache_files(cache)) == 1
    assert any(l.startswith("Image features of the *test* set: saved to") for l in log_fill)

    acc_hit, logits_hit, log_hit, decoded_hit = evaluate(t, capsys, monkeypatch)
    assert decoded_hit == 0  # no image read at all
    assert any(l.startswith("Image features of the *test* set: from the feature") for l in log_hit)
    for a, lg, lines in ((acc_fill, logits_fill, log_fill), (acc_hit, logits_hit, log_hit)):
        assert a == acc
        assert torch.equal(lg, logits)  # bit for bit: the batch size is the same
        assert without_cache_lines(lines) == log
    assert "Evaluate on the *test* set" in log and "=> result" in log


def test_another_batch_size_reads_the_cache_within_float_rounding(data, tmp_path, capsys,
                                                                  monkeypatch):
    cache = tmp_path / "cache"
    evaluate(build(data, tmp_path, "CoOp", cache), capsys, monkeypatch)  # fills, batch 32
    small = ["DATALOADER.TEST.BATCH_SIZE", "5"]
    acc, logits, _, _ = evaluate(build(data, tmp_path, "CoOp", None, small), capsys, monkeypatch)
    acc_hit, logits_hit, log, decoded = evaluate(build(data, tmp_path, "CoOp", cache, small),
                                                 capsys, monkeypatch)
    assert decoded == 0 and acc_hit == acc
    assert sum(l.startswith("Evaluate on") for l in log) == 1
    torch.testing.assert_close(logits_hit, logits, rtol=1e-6, atol=0)


# ------------------------------------------------------------------ the key
def touch_one_image(data):
    root, _ = data
    image = sorted((root / "toy" / "test").rglob("*.png"))[5]
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


KEY_CHANGES = {
    "weights": dict(weights_seed=1),
    "precision (amp)": dict(opts=["TRAINER.COOP.PREC", "amp"], env={"PREC_ON_CPU": "1"}),
    "precision (fp16)": dict(opts=["TRAINER.COOP.PREC", "fp16"], env={"PREC_ON_CPU": "1"}),
    "transform (interpolation)": dict(opts=["INPUT.INTERPOLATION", "bilinear"]),
    "transform (normalization)": dict(opts=["INPUT.PIXEL_MEAN", "[0.5, 0.5, 0.5]"]),
    "one image file touched": dict(before=touch_one_image),
}


@pytest.mark.parametrize("change", list(KEY_CHANGES))
def test_a_change_of_what_determines_the_features_misses_the_cache(
        data, tmp_path, capsys, monkeypatch, change):
    spec = KEY_CHANGES[change]
    cache = tmp_path / "cache"
    evaluate(build(data, tmp_path, "CoOp", cache), capsys, monkeypatch)
    filled = cache_files(cache)
    assert len(filled) == 1
    if "before" in spec:
        spec["before"](data)
    for key, value in spec.get("env", {}).items():
        monkeypatch.setenv(key, value)
    opts, seed = spec.get("opts", []), spec.get("weights_seed", 0)
    _, logits, _, _ = evaluate(build(data, tmp_path, "CoOp", None, opts, seed), capsys,
                               monkeypatch)
    for key, value in spec.get("env", {}).items():  # evaluate() undid the monkeypatch
        monkeypatch.setenv(key, value)
    t = build(data, tmp_path, "CoOp", cache, opts, seed)
    _, logits_changed, log, decoded = evaluate(t, capsys, monkeypatch)
    assert decoded == 24, "the features were not computed afresh"
    assert torch.equal(logits_changed, logits)
    assert len(cache_files(cache)) == 2 and set(filled) < set(cache_files(cache))


# ------------------------------------------------------------------ bad files
def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def change_values(path):
    data = torch.load(path, weights_only=True)
    data["features"] = data["features"] * 2  # the checksum still says the old values
    torch.save(data, path)


def foreign(path):
    data = torch.load(path, weights_only=True)
    data["key"] = data["key"].replace('"format"', '"format_"')
    torch.save(data, path)


def garbage(path):
    path.write_bytes(b"not a feature file")


@pytest.mark.parametrize("damage", [truncate, change_values, foreign, garbage],
                         ids=["truncated", "corrupt", "foreign", "garbage"])
def test_a_bad_cache_file_is_set_aside_with_one_warning_and_recomputed(
        data, tmp_path, capsys, monkeypatch, damage):
    cache = tmp_path / "cache"
    t = build(data, tmp_path, "CoOp", cache)
    acc, logits, _, _ = evaluate(t, capsys, monkeypatch)
    (name,) = cache_files(cache)
    damage(cache / name)
    acc_again, logits_again, log, decoded = evaluate(t, capsys, monkeypatch)
    warnings = [line for line in log if line.startswith("WARNING")]
    assert len(warnings) == 1 and name in warnings[0] and "set aside" in warnings[0]
    assert decoded == 24 and acc_again == acc and torch.equal(logits_again, logits)
    assert len(list(cache.glob(f"{name}.bad-*"))) == 1  # kept, not deleted
    _, logits_hit, _, decoded = evaluate(t, capsys, monkeypatch)  # the file was rewritten
    assert decoded == 0 and torch.equal(logits_hit, logits)


def test_a_cache_folder_that_cannot_be_made_costs_one_warning(data, tmp_path, capsys,
                                                              monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    acc, logits, _, _ = evaluate(build(data, tmp_path, "CoOp", None), capsys, monkeypatch)
    t = build(data, tmp_path, "CoOp", blocker / "cache")
    for _ in range(2):
        acc_c, logits_c, log, decoded = evaluate(t, capsys, monkeypatch)
        warnings = [line for line in log if line.startswith("WARNING")]
        assert len(warnings) == 1 and "not cached" in warnings[0]
        assert decoded == 24 and acc_c == acc and torch.equal(logits_c, logits)


def test_a_full_disk_costs_one_warning_and_leaves_no_partial_file(data, tmp_path, capsys,
                                                                  monkeypatch):
    cache = tmp_path / "cache"
    t = build(data, tmp_path, "CoOp", cache)
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(feature_cache.torch, "save", disk_full)
    _, logits, log, _ = evaluate(t, capsys, monkeypatch)  # undoes the patch when done
    warnings = [line for line in log if line.startswith("WARNING")]
    assert len(warnings) == 1 and "No space left" in warnings[0]
    assert os.listdir(cache) == [n for n in os.listdir(cache) if n.endswith(".lock")]
    _, logits_again, _, decoded = evaluate(t, capsys, monkeypatch)
    assert decoded == 24 and torch.equal(logits_again, logits)


# ------------------------------------------------------------------ learned features
@pytest.mark.parametrize("trainer", ["MaPLe", "IVLP", "PromptSRC"])
def test_a_vision_prompt_learner_never_reads_the_cache(data, tmp_path, capsys, monkeypatch,
                                                       trainer):
    cache = tmp_path / "cache"
    # A frozen learner fills the file a lookup with these weights, images and transform
    # would find; then its features are poisoned (with a valid checksum), so that reading
    # it would show in the logits.
    coop = build(data, tmp_path, "CoOp", cache)
    _, coop_logits, _, _ = evaluate(coop, capsys, monkeypatch)
    (name,) = cache_files(cache)
    stored = torch.load(cache / name, weights_only=True)
    stored["features"] = -stored["features"]
    stored["digest"] = feature_cache._features_digest(stored["features"])
    torch.save(stored, cache / name)
    _, poisoned, _, _ = evaluate(coop, capsys, monkeypatch)
    assert not torch.equal(poisoned, coop_logits)  # a read of the file shows

    t = build(data, tmp_path, trainer, None)
    _, logits, _, _ = evaluate(t, capsys, monkeypatch)
    with pytest.raises(feature_cache.LearnedImageFeatures):
        feature_cache.feature_key(t, t.test_loader)
    set_cache(t, cache)
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    opened, real_load = [], torch.load

    def recording_load(f, *args, **kwargs):
        opened.append(f)
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    _, logits_cached, log, decoded = evaluate(t, capsys, monkeypatch)
    assert not [f for f in opened if str(cache) in str(f)]
    assert torch.equal(logits_cached, logits) and decoded == 24
    assert not [line for line in log if "feature cache" in line]
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before


# ------------------------------------------------------------------ runs
def test_train_py_runs_fill_the_cache_once_and_reuse_it(data, tmp_path):
    """Two train.py processes evaluating the same split at once leave one correct file;
    a later run reads it and reports the same result."""
    root, weights = data
    cache = tmp_path / "cache"
    env = dict(os.environ, DASSL_ENGINE="builtin", OMP_NUM_THREADS="1")
    env[feature_cache.ENV_DIR] = str(cache)

    def command(seed):
        return [sys.executable, "train.py", *train_args(
            root, tmp_path / f"zs{seed}", trainer="ZeroshotCLIP", config=CONFIGS["CoOp"],
            seed=seed, extra=["--eval-only", "MODEL.BACKBONE.NAME", weights[0],
                              "MODEL.BACKBONE.PRETRAINED", ""])]

    procs = [subprocess.Popen(command(s), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for s in (1, 2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    (name,) = cache_files(cache)
    assert not [n for n in os.listdir(cache) if n.endswith(".tmp")]
    later = subprocess.run(command(3), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert f"from the feature cache ({cache / name})" in later.stdout

    def result(out):
        return out[out.index("=> result"):].splitlines()[:6]

    assert result(later.stdout) == result(outs[0]) == result(outs[1])
