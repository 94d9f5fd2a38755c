"""CPU time of a call, robust to other jobs on the machine: ``time.thread_time`` counts only
this thread's running time (a virtual machine may still charge it for a busy neighbour)."""

import time


def best(function, *args, reps=7):
    """Least CPU seconds of one call of function(*args) over reps (a first call warms up)."""
    function(*args)
    times = []
    for _ in range(reps):
        started = time.thread_time()
        function(*args)
        times.append(time.thread_time() - started)
    return min(times)
