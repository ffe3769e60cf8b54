"""``python -m pirl_core.torchrun [torchrun args] -m pirl_core.learner ...``: torchrun that keeps
the learner's exit code.

Plain ``torchrun`` exits 1 whenever any rank fails, so a resume mismatch (3), a clean Ctrl-C (130)
and a dead rank look the same to a script or to the console. This wrapper runs torchrun's own
agent (same arguments, same elastic launch) and exits with rank 0's code when rank 0 exited with
one, ``ExitCode.RANK_FAILED`` (7) when another rank died first, and 128 + signal when the agent
itself was stopped by a signal (rank 0 has then saved and stopped cleanly). torchrun's failure
report (which rank, which exit, which signal) is printed as torchrun prints it.
"""

from __future__ import annotations

import sys

from pirl_core.errors import ExitCode
from pirl_core.process_env import configure_process


def exit_code_of(failures: dict) -> int:
    """Rank 0's own code when it chose one (a positive exit); otherwise a lost rank."""
    rank0 = failures.get(0)
    if rank0 is not None and rank0.exitcode > 0:
        return int(rank0.exitcode)
    return int(ExitCode.RANK_FAILED)


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as err:
        print(err.format_msg(), file=sys.stderr, flush=True)
        return exit_code_of(err.failures)
    except SignalException as err:
        return 128 + int(err.sigval)
    return int(ExitCode.OK)


if __name__ == "__main__":
    configure_process()  # the ranks inherit the decision
    raise SystemExit(main())
