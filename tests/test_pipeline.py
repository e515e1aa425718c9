"""The pipeline as users drive it with DVC, in a throwaway copy of the project on tiny data
(`tiny_project`)."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import NAMESPACE, free_ports, needs_namespaces
from tiny_project import Repo, ran_stages

# What TensorFlow's C++ start-up prints when nothing silences it (absl's log prefix, e.g.
# "E0000 00:00:1795593285.655665 2072 cuda_platform.cc:52] failed call to cuInit ...").
TENSORFLOW_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:|absl::InitializeLog|cuInit",
                                 flags=re.MULTILINE)


def test_repro_writes_every_output_and_leaves_a_clean_status(repo):
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout
    metrics = repo.metrics()
    for split in ("test", "val"):
        assert {"elbo", "reconstruction", "kl", "iwae", "iwae_stderr",
                "accuracy"} <= metrics[split].keys()
        assert metrics[split]["elbo"] < 0 and metrics[split]["iwae"] < 0
        assert 0 <= metrics[split]["accuracy"] <= 1
    figures = sorted(p.name for p in (repo.root / "reports" / "figures").iterdir())
    assert figures == ["latent_manifold.png", "latent_pca.png", "latent_scatter.png",  # z_dim 2
                       "latent_traversals.png", "latent_units.png", "loss_curves.png",
                       "reconstructions.png", "sample_grid.png", "style_transfer.png"]
    assert "Stage 'render' didn't change" in repo.dvc("repro").stdout


def test_plots_show_draws_the_figures_the_history_and_the_confusion_matrix(repo, tmp_path):
    repo.dvc("plots", "show", "-o", str(tmp_path / "html"))
    page = (tmp_path / "html" / "index.html").read_text()
    for figure in ("sample_grid", "loss_curves", "reconstructions", "style_transfer",
                   "latent_pca", "latent_traversals"):
        assert f'<img src="static/workspace_reports_figures_{figure}.png">' in page
        assert (tmp_path / "html" / "static" / f"workspace_reports_figures_{figure}.png").exists()
    for title in ("VAE loss per epoch", "Classifier loss per epoch",
                  "Classifier accuracy per epoch", "Test confusion matrix"):
        assert title in page
    assert page.count("vegaEmbed(") == 4  # each per-epoch curve once, in its titled chart


def test_evaluate_again_gives_the_same_numbers(repo):
    before = repo.metrics()
    repo.dvc("repro", "-f", "evaluate", "--single-item")
    assert repo.metrics() == before


def test_exp_run_with_a_new_z_dim_retrains_only_what_depends_on_it(repo):
    result = repo.dvc("exp", "run", "-S", "z_dim=3")
    assert ran_stages(result.stdout) == ["check_params", "train", "evaluate", "render"]
    config = json.loads((repo.root / "models" / "vae" / "config.json").read_text())
    assert config["z_dim"] == 3
    exps = json.loads(repo.dvc("exp", "show", "--json").stdout)
    experiments = [exp for commit in exps for exp in (commit.get("experiments") or [])]
    runs = [run for exp in experiments for run in exp["revs"]]
    params = [run["data"]["params"]["params.yaml"]["data"]["z_dim"] for run in runs]
    assert 3 in params
    run = runs[params.index(3)]
    shown = run["data"]["metrics"]["reports/metrics.json"]["data"]["test"]
    assert shown["elbo"] == repo.metrics()["test"]["elbo"]
    repo.run("git", "checkout", "-q", "--", ".")
    repo.dvc("checkout", "-q")


def set_param(repo: Repo, dotted_key: str, value) -> None:
    params = yaml.safe_load((repo.root / "params.yaml").read_text())
    *groups, key = dotted_key.split(".")
    group = params
    for name in groups:
        group = group[name]
    group[key] = value
    (repo.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize("key, value, stale", [
    # Knobs that change no output: only check_params, which checks every edit, sees them.
    ("train.resume", False, {"check_params"}),
    ("train.checkpoint_every", 7, {"check_params"}),
    ("train.checkpoint_minutes", 1.5, {"check_params"}),
    ("data.timeout_seconds", 5, {"check_params"}),
    ("data.pypi_wheel_sha256", "ab" * 32, {"check_params"}),
    # A knob that changes the model reruns its training.
    ("z_dim", 3, {"check_params", "train"}),
    ("train.measure_every", 2, {"check_params", "train"}),
])
def test_only_the_knobs_that_change_outputs_make_stages_stale(repo, key, value, stale):
    set_param(repo, key, value)
    try:
        status = json.loads(repo.dvc("status", "--json").stdout)
        assert set(status) == stale, status
    finally:
        repo.run("git", "checkout", "-q", "--", "params.yaml")


def queue_status(repo: Repo, name: str) -> str:
    """The status `dvc queue status` gives the experiment `name` (Queued, Running, Success...)."""
    for line in repo.dvc("queue", "status").stdout.splitlines():
        if name in line.split():
            return line.split()[-2 if line.split()[-1][0].isdigit() else -1]
    return "unknown"


def test_a_queued_experiment_runs_the_code_it_was_queued_with(repo):
    """The workspace's code changes after the experiment was queued; the queue runs the
    queued commit's code, and so gives that code's results."""
    repo.dvc("exp", "run", "--queue", "-S", "z_dim=3", "--name", "queued")
    training = repo.root / "src" / "vaepipe" / "training.py"
    committed = training.read_text()
    training.write_text(f"{committed}\nraise SystemExit('the workspace code ran')\n")
    try:
        repo.dvc("queue", "start")
        for _ in range(600):
            if queue_status(repo, "queued") not in ("Queued", "Running", "unknown"):
                break
            time.sleep(1)
        logs = repo.dvc("queue", "logs", "queued").stdout
    finally:
        training.write_text(committed)
        repo.dvc("queue", "stop", "--kill", check=False)
    assert "the workspace code ran" not in logs
    assert queue_status(repo, "queued") == "Success", logs
    exps = json.loads(repo.dvc("exp", "show", "--json").stdout)
    runs = [run for commit in exps for exp in (commit.get("experiments") or [])
            for run in exp["revs"] if run.get("name") == "queued"]
    queued = runs[0]["data"]["metrics"]["reports/metrics.json"]["data"]
    repo.dvc("exp", "run", "-S", "z_dim=3")  # the same experiment here, by the same code
    assert queued == repo.metrics()
    repo.run("git", "checkout", "-q", "--", ".")
    repo.dvc("checkout", "-q")


def test_bad_param_fails_before_training_and_keeps_the_results(repo):
    before = repo.metrics()
    for setting, message in [
            ("z_dim=0", "error: params.yaml: z_dim: must be at least 1, got 0\n"),
            ("activation=relux", "error: params.yaml: activation: must be one of"),
            ("batch_size=-1", "error: params.yaml: batch_size: must be at least 1"),
            ("learning_rate=1000", "error: params.yaml: learning_rate: must be at most 1.0 "
                                   "(Adam diverges with steps above 1), got 1000\n"),
            # A key that no stage reads: only the check_params stage sees it.
            ("+z_dimm=20", "error: params.yaml: z_dimm: unknown key (expected one of: "),
            ("+train.devise=cpu", "error: params.yaml: train.devise: unknown key")]:
        result = repo.dvc("exp", "run", "-S", setting, check=False)
        assert result.returncode != 0
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert "epoch 1/" not in result.stderr
        repo.run("git", "checkout", "-q", "--", "params.yaml")
        assert repo.metrics() == before
        assert repo.run("git", "status", "--porcelain").stdout == ""
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout


def test_metrics_diff_across_commits_and_the_regression_gate(repo):
    base = repo.run("git", "rev-parse", "HEAD").stdout.strip()
    params = yaml.safe_load((repo.root / "params.yaml").read_text())
    params["epochs"] = 3
    (repo.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repo.dvc("repro")
    repo.commit("three epochs")
    diff = json.loads(repo.dvc("metrics", "diff", base, "--json").stdout)
    elbo = diff["reports/metrics.json"]["test.elbo"]
    assert elbo["new"] == repo.metrics()["test"]["elbo"] and elbo["old"] != elbo["new"]
    assert "epochs" in repo.dvc("params", "diff", base).stdout

    gate = [sys.executable, "-m", "vaepipe.regression", "--config", "gate.yaml"]
    (repo.root / "gate.yaml").write_text(
        "reports/metrics.json:\n  test.elbo: {better: higher, tolerance: 1.0}\n")
    same = repo.run(*gate)
    assert "1 passed, 0 failed" in same.stdout
    metrics = repo.metrics()
    metrics["test"]["elbo"] -= 0.5  # within tolerance
    (repo.root / "reports" / "metrics.json").write_text(json.dumps(metrics))
    assert repo.run(*gate).returncode == 0
    metrics["test"]["elbo"] -= 2.0  # 2.5 nats worse than HEAD
    (repo.root / "reports" / "metrics.json").write_text(json.dumps(metrics))
    worse = repo.run(*gate, check=False)
    assert worse.returncode == 1
    assert "FAIL: worse by 2.5 > 1" in worse.stdout and "0 passed, 1 failed" in worse.stdout
    repo.run("git", "checkout", "-q", "--", ".")
    (repo.root / "gate.yaml").unlink()


def test_push_then_pull_into_a_fresh_clone_needs_no_rerun(repo, tmp_path):
    remote = tmp_path / "remote"
    repo.dvc("remote", "add", "-f", "-d", "local", str(remote))
    repo.commit("add a local remote")
    repo.dvc("push", "-q")
    clone = Repo(tmp_path / "clone")
    clone.root.mkdir()
    clone.run("git", "clone", "-q", str(repo.root), ".")
    clone.dvc("pull", "-q")
    assert (clone.root / "models" / "vae" / "model.weights.h5").exists()
    assert (clone.root / "reports" / "figures" / "sample_grid.png").exists()
    assert "Data and pipelines are up to date" in clone.dvc("status").stdout


def test_stale_check_names_the_stage_whose_code_changed(repo):
    stale_check = (sys.executable, "-m", "vaepipe.regression", "--stale")
    assert "dvc.lock matches the code and params" in repo.run(*stale_check).stdout
    with open(repo.root / "stages" / "evaluate.py", "a") as script:
        script.write("# changed\n")
    result = repo.run(*stale_check, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: dvc.lock is out of date for: evaluate "
                                     "(run `dvc repro` and commit dvc.lock)")
    repo.run("git", "checkout", "-q", "--", ".")


def start_training_and_stop_it(repo: Repo, stop_signal: int) -> None:
    """Start `dvc repro train`, then send `stop_signal` to its process group once it has
    trained two epochs."""
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train"], cwd=repo.root,
                               env=repo.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    epochs = 0
    for line in process.stderr:
        epochs += line.startswith("epoch ")
        if epochs == 2:
            break
    os.killpg(process.pid, stop_signal)
    _, rest = process.communicate(timeout=60)
    assert process.returncode != 0, rest


def output_bytes(repo: Repo) -> dict:
    paths = [*(repo.root / "models").rglob("*"), *(repo.root / "reports" / "train").rglob("*")]
    return {str(p.relative_to(repo.root)): p.read_bytes() for p in paths if p.is_file()}


def train_outputs_in_lock(repo: Repo) -> list:
    return yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]["train"]["outs"]


def test_stopped_training_keeps_the_old_results_and_repro_resumes(repo):
    before = output_bytes(repo)
    params = yaml.safe_load((repo.root / "params.yaml").read_text())
    params["epochs"] = 40
    (repo.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stop_signal in (signal.SIGINT, signal.SIGKILL):
        start_training_and_stop_it(repo, stop_signal)
        assert output_bytes(repo) == before
        assert (repo.root / ".checkpoints" / "train" / "state.json").exists()
    resumed = repo.dvc("repro")
    assert "Running stage 'train'" in resumed.stdout  # no clean-up needed first
    assert "resuming at epoch " in resumed.stderr
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout
    assert not list(repo.root.rglob(".*.tmp")) and not (repo.root / ".checkpoints/train").exists()
    assert len((repo.root / "reports/train/plots/metrics/val/vae_loss.tsv").read_text()
               .splitlines()) == 1 + 40
    after_resume = train_outputs_in_lock(repo)
    repo.dvc("repro", "-f", "train")  # uninterrupted
    assert train_outputs_in_lock(repo) == after_resume
    repo.run("git", "checkout", "-q", "--", ".")
    repo.dvc("checkout", "-q")
    assert output_bytes(repo) == before


def test_multi_worker_the_chief_runs_dvc_repro_train_and_the_other_worker_its_script(
        repo, tmp_path):
    """Worker 0 records the stage's outputs through DVC; worker 1, in a clone of its own with the
    same params and prepared data, trains beside it and writes nothing."""
    other = Repo(tmp_path / "worker1")
    repo.run("git", "clone", "-q", str(repo.root), str(other.root))
    other.dvc("repro", "prepare")
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index, (machine, command) in enumerate([(repo, ["-m", "dvc", "repro", "train"]),
                                                (other, ["stages/train.py"])]):
        params = yaml.safe_load((machine.root / "params.yaml").read_text())
        params["train"]["strategy"] = "multi_worker"
        (machine.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, *command], cwd=machine.root, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env={**machine.env, "TF_CONFIG": json.dumps(tf_config)}))
    try:
        done = [process.communicate(timeout=300) for process in processes]
        assert [process.returncode for process in processes] == [0, 0], done
        assert "Running stage 'train'" in done[0][0]
        lock = {out["path"]: out["md5"] for out in train_outputs_in_lock(repo)}
        status = json.loads(repo.dvc("status", "train", "--json").stdout)
        assert "train" not in status and lock["models/samples.npy"] == hashlib.md5(
            (repo.root / "models" / "samples.npy").read_bytes()).hexdigest()
        for out in train_outputs_in_lock(repo):  # absent, or as committed
            assert not (other.root / out["path"]).exists() or other.run(
                "git", "ls-files", out["path"]).stdout, out["path"]
        assert other.run("git", "status", "--porcelain").stdout == " M params.yaml\n"
    finally:
        repo.run("git", "checkout", "-q", "--", ".")
        repo.dvc("checkout", "-q")


def test_stages_print_no_tensorflow_startup_lines(repo):
    output = repo.first_repro.stdout + repo.first_repro.stderr
    assert "epoch 2/2" in output and "test: elbo" in output  # the stages' own lines are there
    assert not TENSORFLOW_LOG_LINE.findall(output)


def test_a_stage_run_without_the_environment_says_to_activate_it(repo, tmp_path):
    # A `python` on PATH that is not the environment's: the interpreter the venv was made from.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys._base_executable)
    env = {**repo.env, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "dvc", "repro", "-f", "--single-item",
                             "prepare"], cwd=repo.root, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert re.search(r"cannot import [a-z, ]*tensorflow: activate the project's environment "
                     r"first \(`source .venv/bin/activate`\), or run `python3 tasks.py repro`",
                     result.stderr)
    assert "Traceback" not in result.stderr
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout


@needs_namespaces
def test_a_read_only_output_folder_fails_before_evaluating_and_keeps_the_results(repo):
    # Root ignores permission bits: a read-only bind mount in a private namespace is the real
    # thing. The folder of two of evaluate's three outputs is read-only.
    outputs = [repo.root / "reports" / "metrics.json",
               repo.root / "reports" / "evaluate" / "test_predictions.csv",
               repo.root / "reports" / "evaluate" / "latent_units.json"]
    before = [path.read_bytes() for path in outputs]
    shell = ("mount --bind reports/evaluate reports/evaluate && "
             "mount -o remount,bind,ro reports/evaluate && "
             f"{sys.executable} -m dvc repro -f --single-item evaluate")
    result = repo.run(*NAMESPACE, "sh", "-c", shell, check=False)
    assert result.returncode != 0
    assert ("error: reports/evaluate: cannot write outputs here: Read-only file system\n"
            in result.stderr)
    assert "test: elbo" not in result.stderr  # it stopped before evaluating
    assert [path.read_bytes() for path in outputs] == before
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout


def test_exp_run_of_the_unconditional_two_layer_bernoulli_model_on_binarized_data(repo):
    result = repo.dvc("exp", "run", "-S", "likelihood=bernoulli", "-S", "conditioning=none",
                      "-S", "binarization=dynamic", "-S", "objective=iwae",
                      "-S", "train_samples=3", "-S", "kl_weight=0.5",
                      "-S", "z_dim=[3,2]", "-S", "latent_hidden_layers=[4]",
                      "-S", "output_bias_init=data_mean")
    assert ran_stages(result.stdout) == ["check_params", "train", "evaluate", "render"]
    trained_with = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]["train"]
    assert {key: trained_with["params"]["params.yaml"][key]
            for key in ("objective", "train_samples", "kl_weight", "output_bias_init")} == {
        "objective": "iwae", "train_samples": 3, "kl_weight": 0.5,
        "output_bias_init": "data_mean"}
    config = json.loads((repo.root / "models" / "vae" / "config.json").read_text())
    assert (config["likelihood"], config["conditioning"]) == ("bernoulli", "none")
    assert (config["z_dim"], config["latent_hidden_layers"]) == ([3, 2], [4])
    units = json.loads((repo.root / "reports" / "evaluate" / "latent_units.json").read_text())
    assert [layer["units"] for layer in units["test"]] == [3, 2]
    assert re.search(r"test: z1: \d of 3, z2: \d of 2 latent units active",
                     result.stdout + result.stderr)
    metrics = repo.metrics()
    for split in ("test", "val"):
        assert "accuracy" not in metrics[split]
        assert metrics[split]["nll"] == -metrics[split]["iwae"] > 0
        assert metrics[split]["nll_measures"].startswith("-log p(x), estimated as -(IWAE bound")
        assert "comparable with the VAE and IWAE papers" in metrics[split]["nll_measures"]
    figures = sorted(p.name for p in (repo.root / "reports" / "figures").iterdir())
    assert figures == ["latent_manifold.png", "latent_pca.png", "latent_scatter.png",
                       "latent_traversals.png", "latent_units.png", "loss_curves.png",
                       "reconstructions.png", "sample_grid.png"]  # no style transfer without digits
    predictions = (repo.root / "reports" / "evaluate" / "test_predictions.csv").read_text()
    assert predictions == "actual,predicted\n"
    repo.run("git", "checkout", "-q", "--", ".")


ONE_SAMPLE_ELBO = {"objective": "elbo", "train_samples": 1}
FAMILY = [(likelihood, binarization, conditioning, architecture, ONE_SAMPLE_ELBO)
          for likelihood in ("gaussian", "bernoulli") for binarization in ("none", "dynamic")
          for conditioning in ("classifier", "none") for architecture in ("mlp", "conv")]
# The objective meets the likelihood (log p(x|z)) and the conditioning (c(x) beside each z).
FAMILY += [(likelihood, binarization, conditioning, "mlp",
            {"objective": objective, "train_samples": 3, "kl_weight": 0.5})
           for likelihood, binarization in (("gaussian", "none"), ("bernoulli", "dynamic"))
           for conditioning in ("classifier", "none")
           for objective in ("elbo", "iwae", "iwae_dreg")]
# Two stochastic layers (their ELBO samples the KL) with DReG and the conv architecture; the
# exp-run test above adds IWAE without conditioning.
TWO_LAYERS = {"z_dim": [3, 2], "latent_hidden_layers": [4]}
FAMILY += [("bernoulli", "dynamic", "none", "mlp", {**TWO_LAYERS, **ONE_SAMPLE_ELBO}),
           ("bernoulli", "dynamic", "classifier", "mlp",
            {**TWO_LAYERS, "objective": "iwae_dreg", "train_samples": 3}),
           ("gaussian", "none", "classifier", "conv", {**TWO_LAYERS, **ONE_SAMPLE_ELBO})]


def member_id(value) -> str:
    return ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value


@pytest.mark.parametrize("likelihood, binarization, conditioning, architecture, objective",
                         FAMILY, ids=member_id)
def test_every_member_of_the_family_trains_evaluates_and_renders(
        repo, tmp_path, likelihood, binarization, conditioning, architecture, objective):
    """The three stages' functions, in this process, on the tiny repo's prepared data, with
    params checked as params.yaml is."""
    from vaepipe.evaluation import evaluate_stage
    from vaepipe.model import load_model
    from vaepipe.params import parse_params, read_yaml
    from vaepipe.render import render_stage
    from vaepipe.training import train

    raw = read_yaml(repo.root / "params.yaml")
    raw.update(likelihood=likelihood, binarization=binarization, conditioning=conditioning,
               architecture=architecture, epochs=1, **objective)
    if architecture == "conv":
        raw["conv_filters"] = [2, 3]
    # Without XLA: compiling 16 models would take minutes (the compiled path is the repo's
    # own, run by the tests above).
    raw["train"]["jit_compile"] = False
    params = parse_params(raw)
    prepared = repo.root / "data" / "prepared"
    model, samples, live = tmp_path / "vae", tmp_path / "samples.npy", tmp_path / "live"
    train(params, prepared, model, samples, live, None)
    units = tmp_path / "latent_units.json"
    metrics = evaluate_stage(params, model, prepared, tmp_path / "metrics.json",
                             tmp_path / "predictions.csv", units)
    render_stage(params, model, samples, live, prepared, units, tmp_path / "figures")
    saved = load_model(model)
    assert ({key: saved.config[key] for key in ("likelihood", "conditioning", "architecture")}
            == {"likelihood": likelihood, "conditioning": conditioning,
                "architecture": architecture})
    assert any("conv2d" in weight.path for weight in saved.weights) == (architecture == "conv")
    for split in ("test", "val"):
        assert np.isfinite(metrics[split]["nll"]) and metrics[split]["nll"] == \
            -metrics[split]["iwae"]
        assert metrics[split]["nll_measures"].endswith(
            saved.likelihood.data_meaning[binarization])
        assert ("accuracy" in metrics[split]) == (conditioning == "classifier")
    logged = {path.stem for path in (live / "plots" / "metrics" / "train").iterdir()}
    assert logged == set(saved.conditioning.split_metrics)
    figures = {path.name for path in (tmp_path / "figures").iterdir()}
    assert ("style_transfer.png" in figures) == (conditioning == "classifier")
    assert {"sample_grid.png", "loss_curves.png", "latent_manifold.png",
            "latent_units.png"} <= figures
    written = json.loads(units.read_text())["test"]
    layers = [written] if isinstance(written, dict) else written
    assert [layer["units"] for layer in layers] == list(saved.latent_sizes)
    assert saved.config["z_dim"] == objective.get("z_dim", raw["z_dim"])



def experiment_metrics(machine: Repo) -> dict:
    """Each named experiment's test metrics, from `dvc exp show --json`."""
    shown = json.loads(machine.dvc("exp", "show", "--json").stdout)
    return {run["name"]: run["data"]["metrics"]["reports/metrics.json"]["data"]["test"]
            for commit in shown for exp in (commit.get("experiments") or [])
            for run in exp["revs"] if run.get("name")}


def test_a_sweep_split_over_two_machines_is_shared_through_git_and_a_dvc_remote(repo, tmp_path):
    """Two clones of one git remote each run their part of a sweep from DVC's queue and push it
    (`dvc exp push`: the experiment's commit to git, its outputs to the DVC remote); a third
    clone pulls both and compares them."""
    origin, storage = tmp_path / "origin.git", tmp_path / "storage"
    repo.run("git", "clone", "-q", "--bare", str(repo.root), str(origin))

    def machine(name: str) -> Repo:
        clone = Repo(tmp_path / name)
        clone.root.mkdir()
        clone.run("git", "clone", "-q", str(origin), ".")
        clone.dvc("remote", "add", "--local", "-d", "shared", str(storage))
        return clone

    ran = {}
    for name, z_dim in (("a", 3), ("b", 4)):
        worker = machine(name)
        worker.dvc("exp", "run", "--queue", "-S", f"z_dim={z_dim}", "--name", f"z{z_dim}")
        try:
            worker.dvc("queue", "start")
            for _ in range(600):
                if queue_status(worker, f"z{z_dim}") not in ("Queued", "Running", "unknown"):
                    break
                time.sleep(1)
        finally:
            worker.dvc("queue", "stop", "--kill", check=False)
        assert queue_status(worker, f"z{z_dim}") == "Success"
        worker.dvc("exp", "push", "origin", f"z{z_dim}")
        ran.update(experiment_metrics(worker))
    assert sorted(ran) == ["z3", "z4"]

    reader = machine("c")
    reader.dvc("exp", "pull", "origin", "z3", "z4")
    assert experiment_metrics(reader) == ran
    reader.dvc("exp", "apply", "z4")  # the outputs come from the DVC remote, not a rerun
    reader.dvc("checkout", "-q")
    assert json.loads((reader.root / "models" / "vae" / "config.json").read_text())["z_dim"] == 4
    assert "Data and pipelines are up to date" in reader.dvc("status").stdout
    report = reader.run(sys.executable, "-m", "vaepipe.report", "--diff", "z3", "z4")
    assert (reader.root / "reports" / "html" / "index.html").exists(), report.stderr
