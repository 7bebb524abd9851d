"""A Ray curation run slow enough to kill in the middle of a stage (the kill test's subprocess): its own
local Ray of 2 CPUs and the test model ops, one of them pausing per batch.

    python -m tests.runtime.curation.ray_run SHARDS OUTPUT
"""

import os
import sys
from pathlib import Path

from compiler.schema.data import Aesthetic, Blur, PerceptualDedup, Watermark
from runtime.curation import run
from tests.runtime.curation.model_ops import register

OPS = [Blur(min_laplacian_var=20), Aesthetic(scorer="test-mean-luma", min_score=124),
       Watermark(scorer="test-slow-colour-spread", max_score=1.0), PerceptualDedup(max_hamming=4)]

if __name__ == "__main__":
    import ray

    register()
    root = str(Path(__file__).resolve().parents[3])  # the workers import the hook from this repository
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.runtime.curation.model_ops.register",
                          "env_vars": {"PYTHONPATH": path}})
    run(OPS, sys.argv[1], sys.argv[2], executor="ray", workers=2)
