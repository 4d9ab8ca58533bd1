"""Proxy NAS on NNI's remote training service: the config `nas init` writes, and a real run over SSH.

The run starts a real OpenSSH server on 127.0.0.1 (this user, a key made here) and lets `nnictl`
send two trials to it, as it would to another machine: NNI logs in, starts its trial keeper with
the venv's Python, uploads the experiment folder and runs the trials from the uploaded copy. It is
skipped only where sshd cannot run (Debian: `apt-get install openssh-server`).
"""
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import NamedTuple

import pytest
import yaml

from test_nas import _free_port, run_cli, two_trials

SSHD = "/usr/sbin/sshd"


def remote_init(capsys, proxy, out, *extra):
    return run_cli(capsys, "nas", "init", "--data", "digits", "--proxy", proxy, "--out", str(out),
                   "--training-service", "remote", *extra)


def test_remote_config_lists_the_machines_and_travels_with_its_data(tmp_path, capsys, proxy, digits_npz):
    key = tmp_path / "id_test"
    key.write_text("not checked by dcapps, only that it exists\n")
    out = tmp_path / "exp"
    rc, text, err = remote_init(capsys, proxy, out, "--data", digits_npz, "--machine", "alice@gpu1",
                                "--machine", "bob@10.0.0.7:2222", "--machine", "carol@[fe80::1]:23",
                                "--ssh-key", str(key), "--manager-ip", "10.0.0.1", "--epochs", "1", "--json")
    assert rc == 0, err
    assert json.loads(text.strip().splitlines()[-1])["machines"] == [
        "alice@gpu1:22", "bob@10.0.0.7:2222", "carol@fe80::1:23"]
    cfg = yaml.safe_load((out / "config.yml").read_text())
    python_dir = os.path.dirname(sys.executable)
    assert cfg["trainingService"] == {"platform": "remote", "machineList": [
        {"host": h, "port": p, "user": u, "sshKeyFile": str(key), "pythonPath": python_dir}
        for u, h, p in (("alice", "gpu1", 22), ("bob", "10.0.0.7", 2222), ("carol", "fe80::1", 23))]}
    assert cfg["nniManagerIp"] == "10.0.0.1" and cfg["trialCommand"].startswith(sys.executable)
    assert (out / ".nniignore").read_text() == "/nni-experiments/\n"  # NNI's own files stay out of the upload
    setup = json.loads((out / "trial.json").read_text())
    assert setup["data"] == "data.npz" and setup["data_in_folder"] and (out / "data.npz").is_file()

    from nas.config import experiment_config, tuner_config
    from nni.experiment.config import ExperimentConfig  # NNI's own schema accepts the file
    checked = ExperimentConfig.load(str(out / "config.yml"))
    checked.validate()
    assert [m.port for m in checked.training_service.machine_list] == [22, 2222, 23]
    assert experiment_config("x", tuner_config("grid", 0, 1), 1, 1)["trainingService"]["platform"] == "local"

    # the folder alone is the trial's world: moved, with the original data gone, it still runs
    os.remove(digits_npz)
    moved = shutil.move(str(out), str(tmp_path / "elsewhere"))
    from nas.trial import main as trial_main
    assert trial_main(["--setup", os.path.join(moved, "trial.json"), "--params", '{"depth": 1, "width": 32}']) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["proxy_images"] == 20


def test_bad_remote_settings_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, proxy):
    key = tmp_path / "key"
    key.write_text("k\n")
    out = tmp_path / "exp"
    ok = ["--machine", "me@host", "--ssh-key", str(key)]
    cases = [(["--training-service", "local", "--machine", "me@host"], "--machine"),
             ([], "--machine"),
             (["--machine", "host-without-user", "--ssh-key", str(key)], "USER@HOST"),
             (["--machine", "me@host:0", "--ssh-key", str(key)], "--machine"),
             (["--machine", "me@host:65536", "--ssh-key", str(key)], "--machine"),
             (["--machine", "me@host", "--machine", "me@host:22", "--ssh-key", str(key)], "twice"),
             (["--machine", "me@host", "--ssh-key", str(tmp_path / "missing")], "--ssh-key"),
             ([*ok, "--python", "python3"], "--python"),
             ([*ok, "--manager-ip", " "], "--manager-ip")]
    for extra, word in cases:
        rc, _, err = remote_init(capsys, proxy, out, *extra)
        assert rc == 2 and word in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert not out.exists()
    rc, _, err = run_cli(capsys, "nas", "init", "--data", "digits", "--proxy", proxy, "--out", str(out),
                         "--manager-ip", "10.0.0.1")
    assert rc == 2 and "--manager-ip" in err and not out.exists()


@pytest.mark.parametrize("flag, value", [
    *(("--machine", v) for v in ("me;touch x@host", "`id`@host", "$(id)@host", "-oProxyCommand=x@host", "me@host;id",
                                 "me@$(id)", "me@`id`", "me@ho st", "me@[::1;id]", "me@10.0.0.999")),
    *(("--python", v) for v in ("/opt/py;touch x/python", "/opt/$(id)/python", "/opt/`id`/python", "/opt/py bin/python",
                                "/opt/'q'/python", "/opt/py|x/python", "/opt/py&x/python", "/opt/py:x/python")),
    *(("--manager-ip", v) for v in ("10.0.0.1;touch x", "$(hostname -I)", "`id`", "nni.example.org", "10.0.0.1 x",
                                    "fe80::1%eth0")),
])
def test_values_that_reach_a_remote_command_line_are_refused_with_metacharacters(tmp_path, capsys, proxy, flag,
                                                                                 value):
    """Each value NNI puts into a command line on the remote machines (user and host of a
    --machine, the --python folder on PATH, the manager's address) must have its strict form:
    RFC user and host names, an absolute path without shell metacharacters, an IP literal."""
    key = tmp_path / "key"
    key.write_text("k\n")
    machine = [] if flag == "--machine" else ["--machine", "me@host"]
    rc, _, err = remote_init(capsys, proxy, tmp_path / "exp", "--ssh-key", str(key), *machine, flag, value)
    assert rc == 2 and flag in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "exp").exists()


class Sshd(NamedTuple):
    user: str
    port: int
    key: str
    home: str  # the HOME of sessions, where NNI's trial keeper keeps its files


@pytest.fixture
def sshd(tmp_path):
    """A real sshd on 127.0.0.1 that lets this user in with a key made here; sessions get
    their own HOME and a pip that stays offline (NNI runs `pip install nni --upgrade` there)."""
    if not os.path.isfile(SSHD) or not shutil.which("ssh-keygen"):
        pytest.skip(f"{SSHD} or ssh-keygen is missing: no SSH server to run (apt-get install openssh-server)")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    d = tmp_path / "sshd"
    home = tmp_path / "remote-home"
    d.mkdir()
    home.mkdir()
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", f"PidFile {d / 'sshd.pid'}",
        "StrictModes no", "UsePAM no", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
        "Subsystem sftp internal-sftp",  # NNI uploads over SFTP
        f"SetEnv HOME={home} PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1", ""]))
    check = subprocess.run([SSHD, "-t", "-f", str(d / "sshd_config")], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"sshd cannot run here: {(check.stderr or check.stdout).strip()}")
    log = open(d / "sshd.log", "w")
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.time() + 10
        while server.poll() is None and time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        if server.poll() is not None:
            pytest.skip(f"sshd cannot run here: {(d / 'sshd.log').read_text().strip()}")
        yield Sshd(getpass.getuser(), port, str(d / "user_key"), str(home))
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
        for pid_file in home.glob("nni-experiments/*/environments/*/trial_keeper*/trial_keeper.pid"):
            _end(pid_file)  # a trial keeper NNI left behind on the "remote machine"


def _end(pid_file) -> None:
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    except (ValueError, OSError):
        pass


def test_nnictl_runs_trials_on_a_remote_machine_over_ssh(tmp_path, capsys, proxy, sshd):
    exp = tmp_path / "exp"
    rc, _, err = remote_init(capsys, proxy, exp, "--machine", f"{sshd.user}@127.0.0.1:{sshd.port}",
                             "--ssh-key", sshd.key, "--manager-ip", "127.0.0.1", "--tuner", "grid",
                             "--max-trials", "2", "--concurrency", "2", "--epochs", "1")
    assert rc == 0, err
    exp_id = two_trials(exp, tmp_path / "home", 180)
    rc, text, err = run_cli(capsys, "nas", "report", "--dir", str(exp), "--json")
    assert rc == 0, err
    res = json.loads(text.strip().splitlines()[-1])
    assert res["experiment"] == exp_id and res["statuses"] == {"SUCCEEDED": 2}
    assert len(res["ranking"]) == 2 and all(0 <= r["accuracy"] <= 1 and r["params"] > 0 for r in res["ranking"])
    # the trials ran on the "remote machine", from NNI's uploaded copy of the folder, without NNI's own files
    worker = next(iter((tmp_path / "remote-home" / "nni-experiments" / exp_id / "environments").iterdir()))
    assert len(list((worker / "trials").iterdir())) == 2
    uploaded = worker / "upload" / "trial_code"
    assert (uploaded / "trial.json").is_file() and (uploaded / "proxy.pt").is_file()
    assert not (uploaded / "nni-experiments").exists()
