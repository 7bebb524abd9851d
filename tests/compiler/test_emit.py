"""Bundles: deterministic, DeepSpeed-valid, shellcheck-clean, quoted, written atomically."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import specs
from compiler.cli import app
from compiler.emit import render
from compiler.regen import bundle_dir, targets
from compiler.schema.cluster import PRESETS

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "flux-smoke"
    result = runner.invoke(app, ["compile", "flux1-dev", "--cluster", "local-cpu", "--scale", "smoke", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_compiling_twice_gives_byte_identical_bundles(tmp_path):
    first = render(specs.load("wan2.1-t2v-1.3b"), PRESETS["h100-64"], "full")
    second = render(specs.load("wan2.1-t2v-1.3b"), PRESETS["h100-64"], "full")
    assert first.files == second.files


def test_bundle_layout(smoke_bundle):
    names = {str(p.relative_to(smoke_bundle)) for p in smoke_bundle.rglob("*") if p.is_file()}
    for required in ["manifest.json", "spec.resolved.yaml", "assumptions.md", "plan.md", "plan.json", "graph.dot",
                     "graph.mmd", "run_local.sh", "submit_slurm.sh", "README.md"]:
        assert required in names
    stage = specs.load("flux1-dev").schedule.stages[0].name
    for part in ["ds_config.json", "hostfile", "launch.sh", "sbatch.sh", "stage.yaml", "model.py"]:
        assert f"train/{stage}/{part}" in names
    manifest = json.loads((smoke_bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert "smoke scale" in (smoke_bundle / "assumptions.md").read_text()


def test_resolved_spec_in_the_bundle_validates(smoke_bundle):
    assert runner.invoke(app, ["validate", str(smoke_bundle / "spec.resolved.yaml")]).exit_code == 0


def test_stage_file_is_the_trainer_contract(smoke_bundle):
    from ruamel.yaml import YAML

    from compiler.schema.bundle import StageFile

    for path in smoke_bundle.glob("train/*/stage.yaml"):
        stage_file = StageFile.model_validate(YAML(typ="safe").load(path.read_text()))
        assert stage_file.scale == "smoke" and stage_file.layout.dp_size == 1


def test_a_subset_of_a_subset_filters_by_both():
    from ruamel.yaml import YAML

    bundle = render(specs.load("allegro"), PRESETS["h100-64"], "full")
    stage = YAML(typ="safe").load(bundle.files["train/t2v_finetune/stage.yaml"])
    (data,) = stage["data"]
    # allegro_video_hq (6-16 s) is a subset of allegro_video_720p (720 px videos) of the training set.
    assert data["dataset"] == "allegro_video_hq" and data["modality"] == "video"
    assert data["where"]["modality"] == "video" and data["where"]["min_short_side_px"] == 720
    assert (data["where"]["min_seconds"], data["where"]["max_seconds"]) == (6.0, 16.0)


def test_pipeline_json_carries_the_architecture_and_the_first_consuming_stages_size(smoke_bundle):
    from ruamel.yaml import YAML

    from compiler.schema.bundle import read_bundle_pipeline

    document = json.loads((smoke_bundle / "curation" / "flux" / "pipeline.json").read_text())
    pretrain = YAML(typ="safe").load((smoke_bundle / "train" / "pretrain" / "stage.yaml").read_text())
    assert document["architecture"] == pretrain["architecture"]  # what the trainer encodes with
    first = pretrain["stage"]["resolutions"][0]
    assert document["encode_size"] == [first["height"], first["width"]]
    shipped = read_bundle_pipeline(smoke_bundle, "flux")
    assert shipped.encode_size == (first["height"], first["width"]) and shipped.scale == "smoke"
    assert shipped.architecture.model_dump(mode="json") == pretrain["architecture"]


def test_the_encode_size_follows_subsets_to_the_first_stage_reading_the_pipeline(flux_spec, wan_spec):
    from compiler.schema.bundle import encode_size

    (main,) = flux_spec.data.pipelines
    assert encode_size(flux_spec, main) == (256, 256)  # pretrain reads `curated`
    # Without pretrain, the first reader is `hires`, through the subset `hires` of `curated`.
    later = flux_spec.model_copy(update={"schedule": flux_spec.schedule.model_copy(
        update={"stages": flux_spec.schedule.stages[1:]})})
    assert encode_size(later, main) == (512, 512)
    clips, stills = wan_spec.data.pipelines
    assert (clips.output, stills.output) == ("clips", "stills")
    video = wan_spec.schedule.stages[1].resolutions[0]  # the first stage, `images`, reads only `stills`
    assert encode_size(wan_spec, clips) == (video.height, video.width)
    unread = main.model_copy(update={"output": "nobody_reads_this"})
    assert encode_size(flux_spec, unread) is None


def generated_bundles():
    return [bundle_dir(*target) for target in targets()]


@pytest.mark.parametrize("bundle", generated_bundles(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_generated_bundle_has_not_drifted(bundle):
    """generated/ holds what the compiler produces today; `make regen` updates it."""
    name, cluster = bundle.parent.name, bundle.name.removesuffix("-smoke")
    scale = "smoke" if bundle.name.endswith("-smoke") else "full"
    fresh = render(specs.load(name), PRESETS[cluster], scale)
    on_disk = {str(p.relative_to(bundle)): p.read_text() for p in bundle.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(fresh.files), "files differ: run `make regen`"
    for path, text in fresh.files.items():
        assert on_disk[path] == text, f"{bundle}/{path} drifted: run `make regen`"


def _world_size(monkeypatch, size):
    import deepspeed.runtime.config as ds_config_module

    monkeypatch.setattr(ds_config_module.dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(ds_config_module.dist, "get_world_size", lambda *a, **k: size)


@pytest.mark.parametrize("bundle", generated_bundles(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_ds_config_is_accepted_by_deepspeed(bundle, monkeypatch):
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.config import DeepSpeedConfig

    plan = {s["stage"]: s for s in json.loads((bundle / "plan.json").read_text())["stages"]}
    configs = sorted(bundle.glob("train/*/ds_config.json"))
    assert configs
    for path in configs:
        stage_yaml = (path.parent / "stage.yaml").read_text()
        stage = next(s for s in plan.values() if f"name: {s['stage']}" in stage_yaml)
        # DeepSpeed's data-parallel size is the world divided by sequence_parallel_size.
        _world_size(monkeypatch, stage["dp_size"] * stage.get("sp_size", 1))
        # A dict, not the path: DeepSpeed looks sequence_parallel_size up in the config it was given.
        config = DeepSpeedConfig(json.loads(path.read_text()))
        assert config.world_size == stage["dp_size"]
        assert config.train_batch_size == (config.train_micro_batch_size_per_gpu
                                           * config.gradient_accumulation_steps * stage["dp_size"])
        assert config.zero_optimization_stage == stage["zero_stage"]


def all_scripts():
    return sorted(p for bundle in generated_bundles() for p in bundle.rglob("*.sh"))


def test_every_generated_script_passes_bash_n_and_shellcheck():
    scripts = all_scripts()
    assert scripts
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert script.read_text().startswith("#!/usr/bin/env bash\n")
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by `make setup` (Debian package shellcheck)"
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[:3000]


def test_every_generated_file_says_what_generated_it():
    for bundle in generated_bundles():
        for path in bundle.rglob("*"):
            if path.is_file():
                head = path.read_text()[:400]
                assert "genspec" in head and "enerated" in head, path


HOSTILE = "x'; touch CANARY; echo \"$(touch CANARY)\" `touch CANARY` ; \n touch CANARY #"


# Every field of a cluster file (compiler/schema/cluster.py), each string one the scripts could execute.
HOSTILE_CLUSTER = {
    "name": HOSTILE, "nodes": 1, "gpus_per_node": 0, "cpus_per_node": 2, "memory_gib_per_node": 24,
    "gpu": {"name": HOSTILE, "memory_gib": 80, "peak_bf16_tflops": 989}, "cpu_peak_tflops": 0.1,
    "interconnect": HOSTILE, "cpu_ranks_per_node": 1,
    "scheduler": "slurm", "partition": HOSTILE, "account": "a;b", "qos": HOSTILE, "memory_request": "0",
    "exclusive": True, "time_limit_minutes": 30, "signal_grace_seconds": 60, "modules": [HOSTILE, "cuda/12.4"],
    "container": HOSTILE, "container_mounts": [HOSTILE, "/data:/data"], "run_root": HOSTILE,
    "model_dir": HOSTILE, "cache_dir": HOSTILE, "environment": {"GENSPEC_NOTE": HOSTILE, "NCCL_IB_HCA": HOSTILE},
    "curation_shards_per_task": 3, "curation_samples_per_shard": 500, "max_array_tasks": 7,
    "memory_headroom": 0.8, "storage_write_gbps": 1.5, "device_hours_per_interruption": 5000,
}
# Fields no string can reach: a hostile string in any of them is refused, naming the field.
TYPED_FIELDS = sorted(field for field, value in HOSTILE_CLUSTER.items()
                      if isinstance(value, (bool, int, float)) and field != "scheduler")


def test_the_hostile_cluster_sets_every_cluster_field():
    from compiler.schema.cluster import Cluster

    # container_runtime is set by test_hostile_values_end_up_quoted's parameter.
    assert set(HOSTILE_CLUSTER) | {"container_runtime"} == set(Cluster.model_fields)


@pytest.mark.parametrize("field, value", [("memory_request", HOSTILE), ("environment", {HOSTILE: "1"}),
                                          ("scheduler", HOSTILE), ("container_runtime", HOSTILE),
                                          *[(field, HOSTILE) for field in TYPED_FIELDS]])
def test_hostile_cluster_values_that_cannot_be_quoted_are_refused(tmp_path, field, value):
    cluster = tmp_path / "hostile.yaml"
    cluster.write_text(json.dumps({**HOSTILE_CLUSTER, field: value}))
    result = runner.invoke(app, ["compile", "flux1-dev", "--cluster", str(cluster), "--scale", "smoke",
                                 "-o", str(tmp_path / "out")])
    assert result.exit_code != 0 and field in result.output, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("container_runtime", ["pyxis", "apptainer"])
def test_hostile_values_end_up_quoted(tmp_path, container_runtime):
    cluster = tmp_path / "hostile.yaml"
    cluster.write_text(json.dumps({**HOSTILE_CLUSTER, "container_runtime": container_runtime}))
    out = tmp_path / "bundle dir with spaces"
    literal = json.dumps(HOSTILE)  # a YAML double-quoted string: quotes, '#' and newlines arrive intact
    spec = specs.load("flux1-dev")
    source, pipeline = spec.data.sources[0].name, spec.data.pipelines[0].name
    result = runner.invoke(app, ["compile", "flux1-dev", "--cluster", str(cluster), "--scale", "smoke", "-o", str(out),
                                 "--set", f"name={literal}",
                                 "--set", f"data.sources[{source}].name={literal}",
                                 "--set", f"data.pipelines[{pipeline}].sources=[{literal}]"])
    assert result.exit_code == 0, result.output
    scripts = sorted(out.rglob("*.sh"))
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
    work = tmp_path / "work"
    work.mkdir()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("sbatch", "deepspeed", "genspec", "scontrol", "srun", "python", "module", "apptainer"):
        (fake_bin / tool).write_text("#!/usr/bin/env bash\necho 4242\n")
        (fake_bin / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "42",
           "GENSPEC_RAW": str(tmp_path / "raw"), "GENSPEC_BUNDLE": str(out), "GENSPEC_RUN_ROOT": str(tmp_path / "run")}
    raw = tmp_path / "raw"
    (raw / HOSTILE).mkdir(parents=True)  # submit_slurm.sh sizes the curation arrays to the shards it finds
    (raw / HOSTILE / "shard-00000.tar").touch()
    runs = [["bash", str(out / "run_local.sh"), "--raw", str(raw)],
            ["bash", str(out / "submit_slurm.sh"), "--raw", str(raw)],
            *[["bash", str(s), "--dry-run"] for s in out.glob("train/*/launch.sh")],
            *[["bash", str(s)] for s in out.glob("train/*/sbatch.sh")],
            *[["bash", str(s), "--raw", str(raw)] for s in out.glob("curation/*/run_local.sh")],
            *[["bash", str(s)] for s in out.glob("curation/*/sbatch_*.sh")],
            ["bash", str(out / "preflight.sbatch.sh")]]
    for command in runs:
        completed = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
        assert completed.returncode == 0, (command, completed.stderr[-2000:])
    assert not any(p.name == "CANARY" for p in tmp_path.rglob("*")), "an injected command ran"
    sbatch_lines = [line for s in out.rglob("*.sh") for line in s.read_text().splitlines() if line.startswith("#SBATCH")]
    assert len(sbatch_lines) > 10 and any("--partition=" in line for line in sbatch_lines), sbatch_lines
    assert all("'" not in line and ";" not in line for line in sbatch_lines)
    # Each field reached the scripts (quoted): a field the templates dropped would pass the checks above.
    text = "\n".join(s.read_text() for s in out.rglob("*.sh"))
    for needle in ("--qos=", "--mem=0", "--exclusive", "--time=0-00:30:00", "USR1@60", "module load", "cuda/12.4",
                   "/data:/data", "NCCL_IB_HCA=", "GENSPEC_MODEL_DIR", "HF_HOME=", "shards_per_task=3", "max_array_tasks=7",
                   "time_limit_minutes=30"):
        assert needle in text, needle
    assert ("--container-image=" if container_runtime == "pyxis" else "apptainer exec") in text


def test_existing_output_is_refused_without_force_and_replaced_with_it(smoke_bundle):
    args = ["compile", "flux1-dev", "--cluster", "local-cpu", "--scale", "smoke", "-o", str(smoke_bundle)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_a_failed_compile_writes_nothing(tmp_path):
    out = tmp_path / "never"
    result = runner.invoke(app, ["compile", "flux1-dev", "--cluster", "local-cpu", "-o", str(out)])
    assert result.exit_code == 1 and "does not fit local-cpu" in result.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_compile_imports_no_torch(tmp_path):
    probe = ("import sys\nfrom compiler.cli import app\n"
             f"try:\n    app(['compile', 'wan2.1-t2v-1.3b', '--cluster', 'h100-64', '-o', {str(tmp_path / 'b')!r}])\n"
             "except SystemExit as e:\n    assert e.code == 0, e.code\n"
             "print(sorted(m for m in ['torch', 'deepspeed', 'transformers', 'diffusers', 'ray'] if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_single_node_launches_pick_a_free_port_unless_master_port_is_set(smoke_bundle):
    launch = smoke_bundle / "train" / "pretrain" / "launch.sh"

    def port(**env):
        clean = {name: value for name, value in os.environ.items() if name != "MASTER_PORT"}
        done = subprocess.run(["bash", str(launch), "--dry-run"], capture_output=True, text=True, check=True,
                              env={**clean, **env})
        return done.stdout.split("--master_port ")[1].split()[0]

    assert port().isdigit() and port() != "29500"
    assert port(MASTER_PORT="12345") == "12345"
    multi_node = render(specs.load("flux1-dev"), PRESETS["h100-64"], "full").files["train/pretrain/launch.sh"]
    assert 'master_port="${MASTER_PORT:-29500}"' in multi_node  # every node must agree on the port


def test_single_node_launch_clears_deepspeeds_shm_segments_of_its_port(smoke_bundle, tmp_path):
    """A rank killed before it could unlink its /dev/shm all-reduce segment: launch.sh removes the segments
    named with its own port and leaves other runs' alone."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    uid = os.getuid()
    segments = Path("/dev/shm")
    # Stands in for the launcher whose rank was SIGKILLed: makes the rank's segment, exits 137.
    stub = fake_bin / "deepspeed"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        'while [ "$1" != --master_port ]; do shift; done\n'
        f'touch "{segments}/deepspeed_allreduce_buffer_{uid}_127.0.0.1_$2_0"\n'
        "exit 137\n"
    )
    stub.chmod(0o755)
    other = segments / f"deepspeed_allreduce_buffer_{uid}_127.0.0.1_1_0"  # port 1: no real run uses it
    other.touch()
    try:
        env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "MASTER_PORT": "2"}
        launch = smoke_bundle / "train" / "pretrain" / "launch.sh"
        done = subprocess.run(["bash", str(launch), "--run-root", str(tmp_path / "run")], env=env, check=False)
        assert done.returncode == 137
        assert not list(segments.glob(f"deepspeed_allreduce_buffer_{uid}_*_2_*"))
        assert other.exists()
    finally:
        other.unlink(missing_ok=True)


def test_wan_14b_on_h100_64_plans_sequence_parallelism_that_deepspeed_accepts(tmp_path, monkeypatch):
    """High-resolution video stages get Ulysses sequence parallelism > 1; plan.md shows it, stage.yaml carries
    it for the trainer's groups and ds_config.json's sequence_parallel_size passes DeepSpeed's own parser."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.config import DeepSpeedConfig

    out = tmp_path / "wan14b"
    result = runner.invoke(app, ["compile", "wan2.1-t2v-14b", "--cluster", "h100-64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    stages = {s["stage"]: s for s in json.loads((out / "plan.json").read_text())["stages"]}
    parallel = {name: s for name, s in stages.items() if s["sp_size"] > 1}
    assert "joint_720p" in parallel, {name: s["sp_size"] for name, s in stages.items()}
    assert stages["joint_256p"]["sp_size"] == 1
    plan_md = (out / "plan.md").read_text()
    assert "| sp |" in plan_md
    for name, stage in parallel.items():
        assert stage["dp_size"] * stage["sp_size"] == PRESETS["h100-64"].world_size
        assert f"| {stage['dp_size']} | {stage['sp_size']} (" in plan_md
        (path,) = [p for p in out.glob("train/*/ds_config.json")
                   if f"name: {name}" in (p.parent / "stage.yaml").read_text()]
        raw = json.loads(path.read_text())
        assert raw["sequence_parallel_size"] == stage["sp_size"]
        assert f"sp_size: {stage['sp_size']}" in (path.parent / "stage.yaml").read_text()
        _world_size(monkeypatch, PRESETS["h100-64"].world_size)
        config = DeepSpeedConfig(raw)
        assert config.world_size == stage["dp_size"]
        assert config.train_batch_size == (config.train_micro_batch_size_per_gpu
                                           * config.gradient_accumulation_steps * stage["dp_size"])


def test_gpu_cluster_stages_start_ranks_with_srun_and_requeue_within_the_partition_limit(tmp_path):
    """flux1-dev on h100-512: every rank comes from srun (no ssh, no pdsh), every job can outlive its time
    limit by requeueing itself, and no job asks for more time than the partition gives."""
    import re

    out = tmp_path / "bundle"
    result = runner.invoke(app, ["compile", "flux1-dev", "--cluster", "h100-512", "-o", str(out)])
    assert result.exit_code == 0, result.output
    preset = PRESETS["h100-512"]
    scripts = sorted(out.glob("train/*/sbatch.sh"))
    assert len(scripts) == 4
    for script in scripts:
        text = script.read_text()
        assert re.search(r"^ranks=\(srun ", text, re.M), script
        assert f"#SBATCH --ntasks-per-node={preset.gpus_per_node}\n" in text
        assert "#SBATCH --requeue\n" in text and "#SBATCH --signal=B:USR1@" in text
        assert "trap request_stop USR1" in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
        days, hours, minutes, seconds = map(int, re.search(r"^#SBATCH --time=(\d+)-(\d+):(\d+):(\d+)$", text,
                                                           re.M).groups())
        assert 0 < (days * 24 + hours) * 60 + minutes <= preset.time_limit_minutes, script
        assert "deepspeed " not in text and "launch.sh" not in text, script
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"\b(ssh|pdsh)\b", text), path
