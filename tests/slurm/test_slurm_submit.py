"""A compiled bundle on a real one-node Slurm cluster (see conftest.py): submit_slurm.sh submits every job,
each runs after its inputs (--dependency=afterok), curation as a job array, training stages through the
DeepSpeed launcher; a failed job cancels its dependents instead of leaving them pending.

The DAG test runs twice: with stubs for the runtime (ordering, array tasks, arguments, chaining) and, marked
slow, with the real runtime on generated shards. Switching is the `use_real_runtime` parameter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import warnings
from pathlib import Path

import pytest

from tests.slurm.conftest import STUB_SHARDS

ROOT = Path(__file__).resolve().parents[2]


def descendants(jobs, name: str) -> set[str]:
    """Every job that depends on `name`, directly or through others."""
    found, frontier = set(), {name}
    while frontier:
        children = {job.name for job in jobs if set(job.parents) & frontier} - found
        found |= children
        frontier = children
    return found


# The scripts themselves -----------------------------------------------------------------------------------------


def test_scripts_are_shellcheck_clean():
    done = subprocess.run(["shellcheck", "scripts/slurm-up.sh", "scripts/slurm-down.sh"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_slurm_up_twice_starts_no_second_daemon(slurm):
    before = slurm.recorded_pids()
    again = subprocess.run(["bash", str(ROOT / "scripts" / "slurm-up.sh"), str(slurm.state)], env=slurm.up_env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert slurm.recorded_pids() == before
    assert again.stderr.count("already running") == 3, again.stderr
    # Exactly one process of each daemon runs from this state directory.
    for name, pid in before.items():
        binary = os.path.realpath(f"/usr/sbin/{name}")
        same_binary = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and os.readlink(f"/proc/{entry}/exe") == binary:
                    same_binary.append(entry)
            except OSError:
                continue
        ours = [p for p in same_binary if slurm.is_running(name, p)]
        assert ours == [pid], f"{name}: processes {ours}, recorded {pid}"


# What the bundle asks Slurm for ---------------------------------------------------------------------------------


def test_requests_fit_the_cluster_they_were_compiled_for(slurm, stub_bundle):
    """Every job script of a bundle compiled for local-cpu (1 node, 2 CPUs, no GPU) is accepted, unmodified,
    by a Slurm cluster of that shape (`sbatch --test-only`: validated, not submitted)."""
    from compiler.schema.cluster import PRESETS

    preset = PRESETS["local-cpu"]
    node = slurm.node()
    assert int(node["CPUTot"]) >= preset.cpus_per_node, f"test node has fewer CPUs than local-cpu: {node}"
    refused = []
    scripts = sorted(stub_bundle.glob("curation/*/sbatch_*.sh")) + sorted(stub_bundle.glob("train/*/sbatch.sh"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        problems = []
        done = slurm.run("sbatch", "--test-only", f"--chdir={stub_bundle}", str(script), check=False)
        if done.returncode != 0:
            problems.append(done.stderr.strip())
        # sbatch names only the first problem; these name every request beyond the preset.
        for option, value in re.findall(r"^#SBATCH\s+--([\w-]+)[= ](\S+)", text, re.M):
            if option in ("gpus", "gpus-per-node", "gres") and not preset.gpus_per_node:
                problems.append(f"--{option}={value} on a cluster without GPUs")
            elif option == "cpus-per-task" and int(value) > preset.cpus_per_node:
                problems.append(f"--cpus-per-task={value} > cpus_per_node={preset.cpus_per_node}")
            elif option == "nodes" and int(value) > preset.nodes:
                problems.append(f"--nodes={value} > nodes={preset.nodes}")
        if problems:
            refused.append(f"{script.relative_to(stub_bundle)}: " + "; ".join(problems))
    assert not refused, (f"Slurm refuses jobs of a bundle compiled for local-cpu (nodes={preset.nodes}, "
                         f"cpus_per_node={preset.cpus_per_node}, gpus_per_node={preset.gpus_per_node}):\n"
                         + "\n".join(refused))


# The whole DAG --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_real_runtime", [
    pytest.param(False, id="stub-runtime"),
    pytest.param(True, id="real-runtime", marks=pytest.mark.slow),
])
def test_every_job_runs_in_dependency_order(run_dag, use_real_runtime):
    # The real DAG: 2 x 2 curation array tasks + finalize, then 4 DeepSpeed stages of 3 steps (~4 min here).
    dag = run_dag(use_real_runtime=use_real_runtime, timeout=420 if use_real_runtime else 90)
    # submit_slurm.sh chains every input the stages' own files name (checked first: the order below follows it).
    for name, inputs in dag.declared_inputs().items():
        assert inputs <= set(dag.by_name()[name].parents), \
            f"{name} is submitted after {dag.by_name()[name].parents} but reads the output of {sorted(inputs)}"
    if dag.adapted:
        warnings.warn("stub run: #SBATCH requests shrunk to fit the test node (see "
                      "test_requests_fit_the_cluster_they_were_compiled_for):\n  " + "\n  ".join(dag.adapted),
                      stacklevel=1)

    assert {name: states for name, states in dag.states().items() if states != ["COMPLETED"]} == {}, \
        dag.diagnostics()
    arrays = [job for job in dag.jobs if job.array is not None]
    assert arrays, "no curation array in the DAG"
    if not use_real_runtime:  # local-cpu: one task per input shard, STUB_SHARDS shards per source
        assert {len(job.array) for job in arrays} == {STUB_SHARDS}, [(job.name, job.array) for job in arrays]
    for job in dag.jobs:
        if job.script.startswith("curation/"):
            # Every curation job has a --time from its estimate, never the partition's default (UNLIMITED here).
            limits = {r["TimeLimit"] for r in dag.records[job.name]}
            assert limits and "UNLIMITED" not in limits, f"{job.name}: TimeLimit {limits}"
        if job.array is not None:
            tasks = sorted(int(r["ArrayTaskId"]) for r in dag.records[job.name])
            assert tasks == job.array, f"{job.name}: array tasks {tasks}, expected {job.array}"
        else:
            assert len(dag.records[job.name]) == 1 and "ArrayTaskId" not in dag.records[job.name][0]
        for parent in job.parents:
            assert dag.start(job.name) >= dag.end(parent), \
                f"{job.name} started before its dependency {parent} ended\n{dag.diagnostics()}"
    jobcomp = dag.jobcomp_records()
    for job in dag.jobs:
        states = [r.get("JobState") for r in jobcomp[job.name]]
        assert states and set(states) == {"COMPLETED"} and len(states) == len(dag.records[job.name]), \
            f"jobcomp log for {job.name}: {states}"

    if use_real_runtime:
        check_real_outputs(dag)
    else:
        check_stub_calls(dag)


def check_stub_calls(dag) -> None:
    """The stubs saw each array task once and each stage's launcher once, with the bundle's arguments, in order."""
    calls = dag.stub_calls()
    node = dag.cluster.node()["NodeName"]
    when: dict[str, list[dict]] = {}
    for job in dag.jobs:
        job_id = dag.ids[job.name]
        if job.array is not None:
            mine = [c for c in calls if c["array_job_id"] == job_id]
            assert sorted(int(c["array_task_id"]) for c in mine) == job.array, f"{job.name}: {mine[:3]}"
            for call in mine:
                argv = call["argv"]
                assert call["tool"] == "python" and argv[:2] == ["-m", "runtime.curation.slurm_task"], argv
                options = dict(zip(argv[2::2], argv[3::2]))
                assert options["--bundle"] == str(dag.bundle), argv
                assert options["--input"].startswith(f"{dag.raw}/"), argv
                assert options["--output"].startswith(f"{dag.run_root}/curated/"), argv
                assert call["env"]["GENSPEC_RUN_ROOT"] == str(dag.run_root)
                assert call["env"]["GENSPEC_RAW"] == str(dag.raw)
        elif job.script.endswith("sbatch_single.sh"):  # a barrier decision or the finalize check: one task
            mine = [c for c in calls if c["job_id"] == job_id]
            assert len(mine) == 1 and mine[0]["argv"][:2] == ["-m", "runtime.curation.slurm_task"], mine
            argv = mine[0]["argv"]
            assert argv[-3:] == ["--stage", argv[-2], "--barrier"] or argv[-1] == "--finalize", argv
            assert mine[0]["array_task_id"] is None, mine
        elif job.name == "preflight":
            mine = [c for c in calls if c["job_id"] == job_id]
            assert [c["tool"] for c in mine] == ["genspec"] and mine[0]["argv"][:2] == ["preflight", str(dag.bundle)], mine
            assert not job.parents and all(j.parents for j in dag.jobs if j is not job), "preflight is not first"
        else:
            mine = [c for c in calls if c["job_id"] == job_id]
            # One srun task per rank (local-cpu: one rank per node), no launcher in between.
            assert len(mine) == 1, f"{job.name}: {len(mine)} rank calls: {mine}"
            call, stage_dir = mine[0], str(dag.bundle / Path(job.script).parent)
            argv = " ".join(call["argv"])
            assert call["tool"] == "python", call
            assert f"-m runtime.train --stage {stage_dir}/stage.yaml" in argv, argv
            assert f"--ds-config {stage_dir}/ds_config.json" in argv and f"--run-root {dag.run_root}" in argv, argv
            assert call["master_addr"] == node, call
            assert call["rank"] == "0" and call["world_size"] == "1" and call["master_port"], call
        when[job.name] = mine
    for job in dag.jobs:
        for parent in job.parents:
            started = min(c["t"] for c in when[job.name])
            parent_ended = max(c["t_end"] for c in when[parent])
            assert started > parent_ended, f"{job.name} started {parent_ended - started:.2f} s before {parent} ended"
    assert len(calls) == sum(len(c) for c in when.values()), "stub calls from outside the submitted jobs"
    # flux's perceptual_dedup barrier is decided once, in its own job, not by the array tasks.
    barriers = [name for name, mine in when.items() if mine and mine[0]["argv"][-1] == "--barrier"]
    assert len(barriers) == 1, barriers
    (barrier,) = barriers
    after = [job for job in dag.jobs if barrier in job.parents]
    assert [job.array is not None for job in after] == [True], after


def check_real_outputs(dag) -> None:
    """Each curation pipeline wrote its output and each stage its checkpoint directory (stage.yaml's output_dir)."""
    for pipeline_file in dag.bundle.glob("curation/*/pipeline.json"):
        output = json.loads(pipeline_file.read_text())["pipeline"]["output"]
        kept = dag.run_root / "curated" / output / "shards"
        assert kept.is_dir() and any(kept.glob("*.tar")), f"{pipeline_file}: no kept shards in {kept}"
        assert (dag.run_root / "curated" / output / "report.json").is_file(), f"{pipeline_file}: no report.json"
    for stage_yaml in dag.bundle.glob("train/*/stage.yaml"):
        output_dir = re.search(r"^output_dir: *(\S+)", stage_yaml.read_text(), re.M).group(1).strip("'\"")
        path = dag.run_root / output_dir
        assert path.is_dir() and any(path.iterdir()), f"{stage_yaml}: no checkpoint in {path}"


# Failure --------------------------------------------------------------------------------------------------------


def test_failed_stage_cancels_its_dependents(run_dag):
    failing = "train-pretrain"
    dag = run_dag(fail="python:/train/pretrain/", timeout=90)
    dependents = descendants(dag.jobs, failing)
    assert dependents, f"nothing depends on {failing}: {dag.jobs}"
    upstream = {job.name for job in dag.jobs} - dependents - {failing}

    for name in upstream:
        assert dag.states()[name] == ["COMPLETED"], f"{name}\n{dag.diagnostics()}"
    (failed,) = dag.records[failing]
    assert (failed["JobState"], failed["ExitCode"]) == ("FAILED", "1:0"), dag.diagnostics()
    for name in sorted(dependents):
        for record in dag.records[name]:
            assert (record["JobState"], record["Reason"]) == ("CANCELLED", "DependencyNeverSatisfied"), \
                f"{name}: {record}"
        assert dag.end(name) - dag.end(failing) <= 30, f"{name} cancelled {dag.end(name) - dag.end(failing)} s late"
    ran = {call["job_id"] for call in dag.stub_calls()}
    assert not ran & {dag.ids[name] for name in dependents}, "a dependent of the failed stage ran"

    jobcomp = dag.jobcomp_records()
    assert [r["JobState"] for r in jobcomp[failing]] == ["FAILED"]
    for name in dependents:
        assert {r["JobState"] for r in jobcomp[name]} == {"CANCELLED"}, f"jobcomp log for {name}: {jobcomp[name]}"
