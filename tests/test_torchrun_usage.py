"""Using unlearnkit under torchrun as docs/distributed.md says: environments torchrun did not write,
ranks that never meet, a rank that goes away, `--nproc`'s exit status, and commands that are not
data-parallel. Each is one line and a non-zero exit status, never a traceback or a wait."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.parallel import launch, torchrun


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_line(code: int, err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------- WORLD_SIZE without torchrun
@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"MASTER_PORT": "29500"}, "MASTER_ADDR is not set in the environment, but WORLD_SIZE is 2: start the ranks"),
        (
            {"MASTER_ADDR": "localhost"},
            "MASTER_PORT is not set in the environment: expected a TCP port from 1 to 65535",
        ),
        ({"MASTER_ADDR": "localhost", "MASTER_PORT": "abc"}, "Bad MASTER_PORT 'abc' in the environment"),
        ({"MASTER_ADDR": "localhost", "MASTER_PORT": "70000"}, "Bad MASTER_PORT '70000'"),
    ],
)
def test_a_world_without_its_rendezvous_address_is_one_line(torchrun_env, values, says):
    """WORLD_SIZE and RANK left set in a shell: torch's ValueError (MASTER_ADDR expected) or int('abc')
    from deep inside init_process_group was the traceback."""
    torchrun_env(WORLD_SIZE="2", RANK="0", **values)
    with pytest.raises(ConfigError, match=says):
        torchrun.from_env()


def test_cli_refuses_a_world_without_its_rendezvous_address(cli, torchrun_env):
    torchrun_env(WORLD_SIZE="2", RANK="0")
    code, _, err = cli("run", "--dataset", "synthetic", "--model", "cnn", "--epochs", "1", "--method", "finetune")
    assert code == 2
    assert one_line(code, err) == (
        "Error: MASTER_ADDR is not set in the environment, but WORLD_SIZE is 2: start the ranks with torchrun "
        "(or unset WORLD_SIZE to run one process)."
    )


def test_ranks_that_never_meet_stop_at_the_timeout_in_one_line(torchrun_env):
    """Rank 0 of 2 alone: torch's DistStoreError ("waiting for clients") was a traceback."""
    import torch

    port = free_port()
    torchrun_env(
        WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **{torchrun.TIMEOUT_ENV: "1"}
    )
    started = time.monotonic()
    with pytest.raises(torchrun.RendezvousError) as refused:
        torchrun.init(torch.device("cpu"))
    assert time.monotonic() - started < 60
    text = str(refused.value)
    assert text.startswith(f"Rank 0 of 2 could not join the other ranks at 127.0.0.1:{port} within 1 s (")
    assert "raise UNLEARNKIT_DDP_TIMEOUT_S" in text and "\n" not in text and refused.value.exit_code == 1
    assert not torch.distributed.is_initialized() and torchrun.world() == torchrun.SINGLE


# ---------------------------------------------------------------------------- a rank goes away
def test_a_lost_peer_is_one_line_and_other_errors_keep_their_traceback(monkeypatch):
    reset = RuntimeError("[../gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:31444: Connection reset by peer.")
    assert torchrun.peer_lost(reset) is None  # one process: nothing to lose
    monkeypatch.setattr(torchrun, "_world", torchrun.World(1, 2))
    lost = torchrun.peer_lost(reset)
    assert lost is not None and lost.exit_code == 1
    assert str(lost).startswith("Rank 1 lost its connection to the other ranks: one of them exited or was killed")
    assert torchrun.peer_lost(RuntimeError("shape mismatch")) is None
    assert torchrun.peer_lost(ValueError("Connection reset by peer")) is None


# ------------------------------------------------------------------------------- --nproc N
def failed_child(*exitcodes: int):
    """torchrun's ChildFailedError for ranks that ended with ``exitcodes``, the first one first."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    failures = {}
    for rank, code in enumerate(exitcodes):
        failure = ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code, error_file="")
        failure.timestamp = rank  # rank 0's is the first
        failures[rank] = failure
    return ChildFailedError("unlearnkit", failures)


@pytest.mark.parametrize(
    ("exitcodes", "status", "says"),
    [
        ((2, -15), 2, ""),  # a refused option on rank 0; torchrun stopped rank 1
        ((-9, 130), 137, "Error: rank 0 was killed by SIGKILL; torchrun stopped the other ranks."),
        ((1, -15), 1, ""),
    ],
)
def test_nproc_ends_with_the_failed_ranks_status_without_torchruns_traceback(
    monkeypatch, capsys, exitcodes, status, says
):
    """torchrun exits 1 and prints its ChildFailedError's traceback and summary after the rank's one line."""
    from torch.distributed import run as torchrun_cli

    def run(args):
        raise failed_child(*exitcodes)

    monkeypatch.setattr(torchrun_cli, "run", run)
    assert launch.main(["--standalone", "--nproc-per-node=2", "-m", "unlearnkit", "run"]) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ChildFailedError" not in err
    assert err.startswith(says) and err.count("\n") == (1 if says else 0)


def test_nproc_relaunches_under_the_launcher(monkeypatch):
    launched = []

    def execve(path, command, env):
        launched.append(command)

    monkeypatch.setattr(torchrun.os, "execve", execve)
    torchrun.relaunch(2, ["run", "-m", "finetune"], "cpu")
    (command,) = launched
    assert command[1:4] == ["-m", "unlearnkit.parallel.launch", "--standalone"]
    assert command[-5:] == ["-m", "unlearnkit", "run", "-m", "finetune"]


def test_nproc_refuses_bad_input_before_torchrun_starts_a_rank(cli, monkeypatch):
    """A misspelt method under --nproc was refused by every rank, ~10 s after torchrun started them."""
    started = []

    def relaunch(nproc, argv, device):  # stands in for the exec into torchrun, which never returns
        started.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(torchrun, "relaunch", relaunch)

    def run(method: str) -> tuple[int, str]:
        argv = ["run", "--nproc", "2", "--device", "cpu", "-m", method, "--dataset", "digits", "--model", "cnn"]
        monkeypatch.setattr(sys, "argv", ["unlearnkit", *argv])  # --nproc re-executes the command line
        code, _, err = cli(*argv)
        return code, err

    code, err = run("finetun")
    assert code == 2 and not started
    assert one_line(code, err).startswith("Error: Unknown method 'finetun'. Did you mean 'finetune'?")
    code, err = run("finetune")
    assert code == 0 and len(started) == 1 and "--nproc" not in started[0], err  # a valid request goes on


@pytest.mark.slow
def test_nproc_with_a_refused_option_is_one_line_and_exit_2(tmp_path):
    """Two real ranks refuse an unknown method: one line (rank 0's) and the status of one process."""
    command = [sys.executable, "-m", "unlearnkit", "run", "--nproc", "2", "--device", "cpu", "-m", "finetun"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert one_line(proc.returncode, proc.stderr).startswith(
        "Error: Unknown method 'finetun'. Did you mean 'finetune'?"
    )


# ----------------------------------------------------------------- commands not adapted
def test_commands_not_adapted_to_torchrun_are_refused_in_one_line(torchrun_env):
    """`unlearnkit sweep` under torchrun ran the grid once per rank: two boards printed, a second
    leaderboard run logged by rank 1; `tune` parted the ranks at their first trial."""
    torchrun.refuse_under_torchrun("sweep")  # one process: nothing to refuse
    torchrun_env(WORLD_SIZE="2", RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    with pytest.raises(ConfigError) as refused:
        torchrun.refuse_under_torchrun("sweep")
    assert str(refused.value) == (
        "'unlearnkit sweep' does not run under torchrun (WORLD_SIZE is 2): only 'unlearnkit run' trains "
        "data-parallel (docs/distributed.md). Start it as one process."
    )


@pytest.mark.parametrize("command", ["sweep", "tune", "audit", "reproduce"])
def test_the_cli_refuses_commands_not_adapted_to_torchrun_once_from_rank_0(cli, torchrun_env, command):
    recipe = {"reproduce": "unlearnkit-digits"}.get(command, "recipes/cpu-mnist.toml")
    torchrun_env(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    code, out, err = cli(command, recipe)
    assert code == 2 and out == "", out
    assert one_line(code, err).startswith(
        f"Error: 'unlearnkit {command}' does not run under torchrun (WORLD_SIZE is 2)"
    )
    torchrun_env(WORLD_SIZE="2", RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    code, out, err = cli(command, recipe)
    assert code == 2 and out == "" and err == ""  # said once, by rank 0


def test_the_cli_says_a_lost_peer_in_one_line(capsys, monkeypatch):
    """A rank whose peer was killed mid-collective printed gloo's 'Connection reset by peer' traceback;
    any other error under torchrun keeps its traceback (a bug is a bug)."""
    import unlearnkit.cli as cli_module
    from tests.invoke import invoke

    monkeypatch.setattr(torchrun, "_world", torchrun.World(0, 2, 0))

    def lost(**kwargs):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection reset by peer")

    monkeypatch.setattr(cli_module, "app", lost)
    code, _, err = invoke(["run"], capsys)
    assert code == 1 and "Rank 0 lost its connection to the other ranks" in one_line(code, err), err

    def bug(**kwargs):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(cli_module, "app", bug)
    with pytest.raises(RuntimeError, match="some other failure"):
        cli_module.main(["run"])
