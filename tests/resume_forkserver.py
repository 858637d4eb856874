"""Preloaded by the forkserver of tests/test_resume.py: one warm-up run of each kind, so that the children it
forks find torch's lazily imported modules loaded (the first run in a process takes seconds longer).

One intra-op thread, set before any torch operation, so the server forks without a thread pool.
"""

import tempfile

import resume_worker
import torch

torch.set_num_threads(1)
with tempfile.TemporaryDirectory() as directory:
    for loss in ("pcd", "flowmc"):
        resume_worker.train(f"{directory}/{loss}.pt", f"{directory}/{loss}", loss=loss)
