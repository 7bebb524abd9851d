"""Where a stage's shard jobs run: `local` (a process pool on this machine, also what each Slurm array
task runs) and `ray_data` (Ray Data on a Ray cluster). Both run the same `runtime.curation.runner` code
and write the same bytes; each exposes `run_jobs(jobs, workers, description)`.
"""
