"""What a GPU run still asks of the CPU: the work ``--backend cuda`` leaves on the host.

The CUDA engine trains on the device, but every ``eval_every`` steps each model's
validation batch is scored by the CPU kernels, and at the start and the end of a run come
the diagnostics and the test batch (``ablate.cuda.engine``: the metric is computed by the
same code on both backends). During a sweep those CPU seconds bound how fast the GPU can
be fed: with C cores, at most C / (CPU seconds a run) runs a second, whatever the GPU.

Measured here, one core (``time.thread_time``, best of a few calls): the CPU training step
(for scale), one validation evaluation, the test evaluation and one diagnosis, and from
them the CPU seconds of one whole run at the suite's budget (the budget's evaluations plus
the fixed part). Compare with the GPU's SM-seconds a run (bench/RESULTS.md).

    python bench/cpu_share.py                       # lstm, tv, gap 100, H 64, as zoo
    python bench/cpu_share.py --hidden 128 --gap 300 --budget 10000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("ABLATE_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_time import best  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--task", default="tv")
    parser.add_argument("--gap", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--validation-batch", type=int, default=512)
    parser.add_argument("--test-batch", type=int, default=1024)
    parser.add_argument("--budget", type=int, default=5000)
    args = parser.parse_args(argv)

    from ablate.results import RunSpec
    from ablate.train import EnsembleSetup, RunState

    spec = RunSpec(args.cell, args.task, gap=args.gap, n_hidden=args.hidden,
                   batch_size=args.batch, eval_every=args.eval_every,
                   eval_batch=args.validation_batch, test_batch=args.test_batch,
                   budget=args.budget)
    setup = EnsembleSetup(spec)
    setup.compile(True)
    run = RunState(spec, setup)
    x, classes, values, mask = setup.interval_batches(spec.seed, 0, 1)

    def one_step() -> None:
        import numpy as np

        setup.train_steps(run.params.copy(), run.m.copy(), run.v.copy(), run.grad, 1, spec.lr,
                          spec.clip, x, classes, values, mask, setup.loss_code,
                          spec.n_hidden, setup.n_out, np.zeros(1), np.zeros(1))

    import numpy as np

    from ablate.cuda.evaluation import with_unscored_steps

    step = best(one_step, reps=5)
    validation = best(setup.evaluate, run.params, "validation", reps=3)
    # since the validation batch is predicted on the device (ablate.cuda.evaluation), the
    # host only scores its outputs: the scored steps come back, NaN fills the others
    T = setup.validation.mask.shape[0]
    y = setup.predict(run.params, np.ascontiguousarray(setup.validation.x, setup.dtype),
                      spec.n_hidden, setup.n_out)[0]
    scored = np.flatnonzero(setup.validation.mask.any(axis=1))
    scoring = best(lambda: setup.score(with_unscored_steps(y[scored], scored, T),
                                       "validation"), reps=5)
    test = best(setup.evaluate, run.params, "test", reps=3)
    diagnosis = best(run.diagnose, reps=3)
    evaluations = args.budget // args.eval_every + 1  # step 0 and every interval
    fixed = test + 2 * diagnosis
    per_run = evaluations * validation + fixed
    per_run_now = validation + (evaluations - 1) * scoring + fixed  # step 0 on the CPU
    T = x.shape[1]
    print(f"{args.cell}, {args.task} gap {args.gap} (T {T}), H {args.hidden}, B {args.batch}; "
          f"validation {args.validation_batch}, test {args.test_batch} sequences; one core")
    print(f"  CPU training step               {1e3 * step:8.2f} ms")
    print(f"  validation evaluation           {1e3 * validation:8.2f} ms  (every {args.eval_every} "
          f"steps: {validation / step:.1f} CPU steps)")
    print(f"  test evaluation                 {1e3 * test:8.2f} ms  (once)")
    print(f"  diagnosis                       {1e3 * diagnosis:8.2f} ms  (twice: start and end)")
    print(f"  scoring the device's outputs    {1e3 * scoring:8.2f} ms  (instead of the "
          f"validation evaluation: {len(scored)} of {T} steps scored)")
    print(f"  a run at budget {args.budget}: {per_run:.2f} CPU-seconds besides training "
          f"({evaluations} validations, the test, two diagnoses) with every validation on the "
          f"CPU; {per_run_now:.2f} with the validation predicted on the GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
