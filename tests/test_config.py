from __future__ import annotations

import subprocess

import pytest
import yaml

from competition.config import Config, ConfigError, load_config, read_config

from helpers import REPO, cli


def test_default_config_is_the_synthetic_competition():
    config = load_config()
    assert config.synth.generate is True
    assert config.data.root == "data/synthetic"
    assert config.folds.k == 5  # inherited from base.yaml


def test_child_config_overrides_only_what_it_names():
    small = load_config(REPO / "configs" / "small.yaml")
    assert small.folds.k == 3 and small.preprocess.image_size == 64
    assert small.synth.generate is True  # from default.yaml
    assert small.preprocess.windows == [[40, 80], [80, 200], [40, 380]]  # from base.yaml


def test_override_is_parsed_as_yaml_and_int_accepted_for_float():
    config = load_config(None, ["synth.noise_hu=3", "preprocess.windows=[[40, 80]]"])
    assert config.synth.noise_hu == 3.0 and isinstance(config.synth.noise_hu, float)
    assert config.preprocess.windows == [[40, 80]]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("folds.kk=3", "Unknown config key 'folds.kk'"),
        ("folds.k=abc", "expects int. Received: 'abc'"),
        ("folds.k=1", "must be >= 2. Received: 1"),
        ("synth.generate=3", "expects bool"),
        ("task.stratify=bleed", "'task.stratify' must be a label column"),
        ("model.backbone=vgg99", "Received: 'vgg99'"),
        ("predict.tta=[identity, rot90]", "a list of values among 'identity', 'hflip'"),
        ("predict.ensemble=median", "one of 'mean', 'geometric', 'rank'"),
        ("synth.prevalence.epidural=high", "'synth.prevalence' expects a mapping of str to float"),
        ("synth.slices_per_series=[30, 20]", "[min, max]"),
        ("preprocess.windows=[[40, 0]]", "width > 0"),
        ("preprocess.image_size=0", "must be >= 8"),
        ("novalue", "section.key=value"),
    ],
)
def test_bad_override_names_key_expectation_and_value(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(f"extends: {REPO / 'configs' / 'base.yaml'}\ntrain_typo:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"train_typo.epochs.*x\.yaml"):
        load_config(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("experiment: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_extends_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["folds.k=4"])
    saved = config.save(tmp_path / "config.yaml")
    assert load_config(saved) == config
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_base_yaml_documents_every_knob():
    """Every schema key appears in base.yaml with a comment on its line or above it."""
    text = (REPO / "configs" / "base.yaml").read_text()
    flat = read_config(REPO / "configs" / "base.yaml").to_dict()
    assert set(yaml.safe_load(text)) == set(flat)
    for line in text.splitlines():
        if line.strip() and not line.strip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line or line.startswith(("  ", "experiment", "seed")), line


def test_show_config_cli_prints_the_resolved_config():
    out = cli("show-config", "--set", "folds.k=7", check=True).stdout
    assert yaml.safe_load(out)["folds"]["k"] == 7


def test_cli_bad_override_exits_non_zero_with_a_clear_message():
    result = cli("index", "--set", "data.workers=-1")
    assert result.returncode == 2
    assert "data.workers' must be >= 0. Received: -1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    ["synth", "index", "folds", "cache", "train", "predict", "validate", "report", "data-report",
     "kaggle", "bench", "gallery", "show-config"],
)  # fmt: skip
def test_every_command_has_help(command):
    out = cli(command, "--help", check=True).stdout
    assert "--config" in out and "--set" in out


def test_config_dataclass_defaults_match_base_yaml():
    assert read_config(REPO / "configs" / "base.yaml") == Config()


def test_base_yaml_alone_has_no_task_and_says_where_one_is():
    with pytest.raises(ConfigError, match=r"'task.heads' needs at least one head.*rsna_ich.yaml"):
        load_config(REPO / "configs" / "base.yaml")


def test_sections_are_frozen():
    config = load_config()
    with pytest.raises(AttributeError):
        config.train.epochs = 3


def test_mapping_leaf_takes_one_key_at_a_time():
    config = load_config(None, ["synth.prevalence.epidural=0.02"])
    assert config.synth.prevalence["epidural"] == 0.02
    assert config.synth.prevalence["subdural"] == 0.063  # the rest from rsna_ich.yaml


def test_every_requirements_file_pins_the_same_stack_and_its_backends():
    def pins(name):
        lines = (REPO / name).read_text().splitlines()
        return {ln for ln in lines if ln and not ln.startswith("#")}

    base = "-r requirements-base.txt"
    cpu, gpu = pins("requirements.txt"), pins("requirements-gpu.txt")
    jax_gpu, torch = pins("requirements-jax-gpu.txt"), pins("requirements-torch.txt")
    assert cpu == {base, "tensorflow-cpu==2.20.0", "jax==0.7.2", "jaxlib==0.7.2"}
    assert gpu - cpu == {"tensorflow[and-cuda]==2.20.0"} and cpu - gpu == {"tensorflow-cpu==2.20.0"}
    assert jax_gpu == {base, "tensorflow-cpu==2.20.0", "jax[cuda12]==0.7.2"}
    assert torch == {"-r requirements.txt", "torch==2.13.0"}
    assert "keras==3.13.2" in pins("requirements-base.txt")


def make_dry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True)


def test_the_venv_flavour_sticks_and_a_mismatch_is_said(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".flavour").write_text("1\n")  # built by make setup GPU=1
    later = make_dry("train", f"VENV={venv}")  # no GPU= on the command line
    assert later.returncode == 0 and "requirements-gpu.txt" in later.stdout
    assert "requirements.txt" not in later.stdout.replace("requirements-gpu.txt", "")
    mismatch = make_dry("train", f"VENV={venv}", "GPU=0")
    assert mismatch.returncode != 0
    assert f"{venv} was built with GPU=1 and this command asks for GPU=0" in mismatch.stderr
    fresh = make_dry("setup", f"VENV={tmp_path / 'new'}", "GPU=1")
    assert "echo 1 > " in fresh.stdout  # the flavour is recorded with the venv


def test_the_venv_backend_sticks_and_a_mismatch_is_said(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".backend").write_text("jax\n")  # set up by make setup BACKEND=jax
    later = make_dry("train", f"VENV={venv}")  # no BACKEND= on the command line
    assert later.returncode == 0 and "requirements.txt" in later.stdout
    shown = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", "-", "show", f"VENV={venv}"],
        input="show:\n\t@echo $$KERAS_BACKEND\n",
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == "jax"  # what every command runs on
    mismatch = make_dry("train", f"VENV={venv}", "BACKEND=tensorflow")
    assert mismatch.returncode != 0
    assert f"{venv} was set up for BACKEND=jax and this command asks for BACKEND=tensorflow" in (
        mismatch.stderr
    )
    switch = make_dry("setup", f"VENV={venv}", "BACKEND=tensorflow")  # the way to switch
    assert switch.returncode == 0 and "echo tensorflow > " in switch.stdout
    gpu_tf = make_dry("setup", f"VENV={tmp_path / 'new'}", "GPU=1", "BACKEND=tensorflow")
    assert "requirements-gpu.txt" in gpu_tf.stdout
    # A new venv's default: JAX on a GPU, TensorFlow on the CPU (docs/backends.md).
    gpu = make_dry("setup", f"VENV={tmp_path / 'new'}", "GPU=1")
    assert "requirements-jax-gpu.txt" in gpu.stdout and "echo jax > " in gpu.stdout
    cpu = make_dry("setup", f"VENV={tmp_path / 'new'}")
    assert "-r requirements.txt" in cpu.stdout and "echo tensorflow > " in cpu.stdout
    unknown = make_dry("train", f"VENV={tmp_path / 'new'}", "BACKEND=mxnet")
    assert unknown.returncode != 0 and "BACKEND must be tensorflow, jax or torch" in unknown.stderr


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "x" * 129, "two words"])
def test_an_experiment_name_must_be_a_safe_folder_name(name):
    with pytest.raises(ConfigError, match="Config key 'experiment' names a folder"):
        load_config(None, [f"experiment={name}"])


def test_sweep_point_names_are_valid_experiment_names():
    from competition.cluster.sweep import point_name

    name = point_name("small", {"train.learning_rate": 0.003, "predict.tta": ["identity"]})
    assert load_config(None, [f"experiment={name}"]).experiment == name
