"""Issue 8 on the real cluster: the job Slurm records is what ``render --explain`` shows, whatever
the job file, site config and login environment hold; the bind policy holds against apptainer's own
environment variables; binds with ':' work; as root and as the test user.

Held jobs (``sbatch --hold``) are read back with ``scontrol show job`` and cancelled (only ours).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clusterenv import Cluster, tres_spelling, wait_job
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hpcjobs import ContainerJob
from hpcjobs.config import load_site, load_site_text
from hpcjobs.directives import sbatch_words
from hpcjobs.errors import HpcjobsError, SchedulerError
from hpcjobs.render import render
from hpcjobs.resolve import ResolvedJob, resolve
from hpcjobs.runner import Call, Completed, RecordingRunner, SubprocessRunner
from hpcjobs.runtimes.apptainer import RUNTIME_PATH_ENV_KEYS
from hpcjobs.schedulers.slurm_cli import SlurmCli, expand_stdout, scontrol_fields
from hpcjobs.spec import JobSpec
from tests.cluster.test_user_cli import UserCli, user_cli  # noqa: F401  (fixture)
from tests.strategies import directive_text

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
DEV_SITE = ROOT / "site-configs" / "dev-cluster.yaml"
# what a user's shell start-up files might export (issue 8, item 5); srun inside the job reads SLURM_*
LOGIN_ENV = {"SBATCH_PARTITION": "gpu", "SBATCH_TIMELIMIT": "3", "SBATCH_JOB_NAME": "from-env",
             "SBATCH_OUTPUT": "/tmp/from-env.out", "SBATCH_ACCOUNT": "fromenv", "SBATCH_NO_REQUEUE": "1",
             "SLURM_MPI_TYPE": "pmi2", "SLURM_CPU_BIND": "none", "SRUN_EXPORT_ENV": "NONE"}  # fmt: skip


def _time_text(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text


# keys scontrol (22.05, 24.11) may print after StdOut= on the same -o line
_AFTER_STDOUT = ("Power", "KillOInInvalidDependent", "TresPerJob", "TresPerNode", "TresPerSocket", "TresPerTask",
                 "TresBind", "TresFreq", "MailUser", "MailType", "CpusPerTres", "MemPerTres", "NtasksPerTRES",
                 "Switches", "Container", "ContainerID", "Comment")


def _record(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, check=True).stdout
    line = out.decode("utf-8", "surrogateescape").split("\n")[0]
    fields = scontrol_fields(line)
    # the two values users write may contain " key=" themselves: cut them at what scontrol prints
    # next (after StdOut: "Power=" on 22.05, "KillOInInvalidDependent=" on both; on 24.11 "TresPerJob="
    # when GPUs are asked for, "MailUser=" with --mail-type, …; or the end)
    after_stdout = "|".join(_AFTER_STDOUT)
    for key, after in (("JobName", " UserId="), ("StdOut", rf"(?: (?:{after_stdout})=.*)? ?$")):
        m = re.search(rf"(?:^| ){key}=(.*?){after}", line)
        assert m is not None, line
        fields[key] = m.group(1)
    return fields


def _held(submitted: list[str]) -> RecordingRunner:
    """A Runner that submits with --hold (recording the ids), and passes everything else on."""
    inner = SubprocessRunner()

    def answer(call: Call) -> Completed | None:
        if call.argv[0] != "sbatch":
            return None
        result = inner(("sbatch", "--hold", *call.argv[1:]), input_text=call.input_text, env=call.env,
                       cwd=call.cwd, timeout_s=call.timeout_s)  # fmt: skip
        if result.ok:
            submitted.append(result.stdout.strip().split(";")[0])
        return result

    return RecordingRunner(answer=answer)


def _assert_recorded_as_explained(job: ResolvedJob, job_id: str, cwd: Path) -> None:
    """Every field hpcjobs writes, as Slurm recorded it (dev cluster: GPUs as --gpus=N, one node)."""
    rec = _record(job_id)
    assert rec["JobName"] == job.name
    assert rec["Partition"] == job.partition
    assert rec["TimeLimit"] == _time_text(job.time_min or 0)
    assert rec["StdOut"] == expand_stdout(os.path.join(cwd, job.output), job_id, None, None, None, str(cwd), None,
                                          job.name)  # fmt: skip
    assert rec["Account"] == (job.account or "(null)")
    assert rec["NumNodes"].split("-")[0] == str(job.nodes) and rec["NumTasks"] == str(job.ntasks)
    assert tres_spelling(rec.get("TresPerJob")) == (f"gres:gpu:{job.gpus}" if job.gpus else None)
    assert rec.get("ArrayTaskId") == job.array
    assert rec["Dependency"] == (f"{job.dependency}(unfulfilled)" if job.dependency else "(null)")
    assert rec["Comment"].startswith("hpcjobs:")


@pytest.fixture(scope="module")
def dep_target(cluster: Cluster) -> Iterator[str]:
    """A held job of ours, for dependencies to point at."""
    r = subprocess.run(["sbatch", "--parsable", "--hold", "--time=1", "--chdir=/tmp", "--output=/dev/null"],
                       input="#!/bin/sh\ntrue\n", text=True, capture_output=True, check=True)  # fmt: skip
    job_id = r.stdout.strip()
    yield job_id
    subprocess.run(["scancel", job_id], check=False)


@pytest.fixture
def held(cluster: Cluster) -> Iterator[list[str]]:
    submitted: list[str] = []
    yield submitted
    if submitted:  # only the jobs this test submitted
        subprocess.run(["scancel", *submitted], check=False)


def _explained_options(explained: str) -> dict[str, str]:
    """--option → value of every #SBATCH line of a script, cut into words as sbatch does."""
    out: dict[str, str] = {}
    for line in explained.split("\n"):  # sbatch's lines end at \n only (str.splitlines also splits at U+2028)
        if line.startswith("#SBATCH "):
            for word in sbatch_words(line.removeprefix("#SBATCH")):
                key, _, value = word.partition("=")
                out[key] = value
    return out


def _set_login_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in LOGIN_ENV.items():
        monkeypatch.setenv(key, value)


# mostly values hpcjobs should carry (so that Slurm is asked), sometimes anything at all
carriable = st.text(st.sampled_from(list(" \"'\\#=-:,;$`*?aZ09./_é\u00a0\u2028")), min_size=1, max_size=16)
names = st.one_of(carriable, directive_text, st.sampled_from(["a b\\", 'say "hi"', "#1", "-t5", "hetjob", "x -p gpu"]))
outputs = st.one_of(carriable, directive_text).map(lambda s: s.replace("%", "") + ".out")  # compared literally
ok_extras = st.one_of(
    st.sampled_from(["--exclusive", "-H", "--mail-type=END", "--constraint=", "--comment=x", "--part=gpu"]),
    carriable.map(lambda s: "--mail-user=" + s), carriable.map(lambda s: "--" + s),
)
extras = st.lists(st.one_of(ok_extras, ok_extras, directive_text), max_size=2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=names, output=outputs, extra=extras, site_extra=st.lists(ok_extras, max_size=1), gpu=st.booleans(),
    time_min=st.integers(1, 1500),
    account=st.sampled_from([None, "proj", "Proj.X+1", "proj\n", "a b"]), via_set=st.booleans(),
    gpus=st.integers(0, 3), array=st.sampled_from([None, "0-3%2", "1,3", "2-4,7", "0-3\n", "1;2"]),
    dep=st.sampled_from([None, "afterok:{}", "afterany:{}", "afterok:{}\n", "afterok:{} -p gpu"]),
)  # fmt: skip
def test_property_slurm_records_what_explain_shows(
    cluster: Cluster, job_dir: Path, held: list[str], dep_target: str, monkeypatch: pytest.MonkeyPatch,
    name: str, output: str, extra: list[str], site_extra: list[str], gpu: bool, time_min: int,
    account: str | None, via_set: bool, gpus: int, array: str | None, dep: str | None,
) -> None:  # fmt: skip
    """Job spec, --set overrides, the site's sbatch list and the login environment, all hostile."""
    _set_login_env(monkeypatch)
    data = yaml.safe_load(DEV_SITE.read_text())
    data["partitions"]["gpu" if gpu else "cpu"]["sbatch"] = site_extra
    fields = {"image": cluster.image("tiny_sif"), "name": name, "output": output, "extra_sbatch": extra,
              "time_min": time_min, "account": account, "partition": "gpu" if gpu else "cpu", "gpus": gpus,
              "array": array, "dependency": dep.format(dep_target) if dep else None}  # fmt: skip
    overrides = {k: fields.pop(k) for k in ("name", "output", "time_min")} if via_set else {}
    try:
        site = load_site_text(yaml.safe_dump(data), "site.yaml")
        job = resolve(JobSpec.model_validate(fields), site, overrides)
        script = render(job)
    except (HpcjobsError, ValueError):  # refused before submission (a pydantic error is a ValueError)
        event("refused by hpcjobs")
        return
    # what --explain shows, read the way sbatch reads it, is what the job says ...
    shown = _explained_options(render(job, explain=True, environ=os.environ))
    assert (shown["--job-name"], shown["--partition"], shown["--time"], shown["--output"]) == (
        job.name, job.partition, str(job.time_min), job.output)
    assert shown.get("--account") == job.account and shown.get("--array") == job.array
    assert shown.get("--dependency") == job.dependency and shown.get("--gpus") == (str(gpus) if gpus else None)
    before = len(held)
    try:
        job_id = SlurmCli(_held(held), retries=0).submit(script, cwd=str(job_dir))
    except SchedulerError as exc:  # Slurm itself said no (e.g. --constraint=): no job, nothing differs
        assert str(exc).startswith("sbatch refused the job: ") and len(held) == before, exc
        event("refused by sbatch")
        return
    event("submitted and compared")
    # ... and what Slurm recorded
    assert len(held) == before + 1 and held[-1] == job_id
    _assert_recorded_as_explained(job, job_id, job_dir)


@pytest.mark.parametrize(
    "fields",
    [
        {"extra_sbatch": ["--exclusive --partition gpu --account evil"]},
        {"extra_sbatch": ["--exclusive\r--partition=gpu"]},
        {"extra_sbatch": ["--part=gpu"]},
        {"extra_sbatch": ["-Hpgpu"]},
        {"output": "o.out\r--partition=gpu"},
        {"output": "o.out\v--partition=gpu"},
        {"output": "o.out\f--partition=gpu"},
        {"output": "a\\b"},
    ],
)
def test_issue_cases_refused_and_what_sbatch_would_have_done(
    cluster: Cluster, job_dir: Path, held: list[str], fields: dict[str, object]
) -> None:
    """Each refused case really changes the job in Slurm when written the old way (so the refusal
    is not a check that cannot fail), and hpcjobs refuses it before submitting."""
    site = load_site(DEV_SITE)
    with pytest.raises((HpcjobsError, ValueError)):
        resolve(JobSpec.model_validate({"image": cluster.image("tiny_sif"), **fields}), site)
    extra = fields.get("extra_sbatch", [])
    old_lines = [f"#SBATCH {e}" for e in extra] if extra else [f"#SBATCH --output={fields['output']}"]
    script = "#!/bin/bash\n#SBATCH --partition=cpu\n#SBATCH --time=5\n" + "\n".join(old_lines) + "\ntrue\n"
    r = subprocess.run(["sbatch", "--parsable", "--hold", f"--chdir={job_dir}"], input=script.encode(),
                       capture_output=True, check=True)  # fmt: skip
    held.append(r.stdout.decode().strip())
    rec = _record(held[-1])
    assert rec["Partition"] == "gpu" or rec["StdOut"] == f"{job_dir}/ab"


def test_mail_and_gpu_options_do_not_confuse_the_record(cluster: Cluster, job_dir: Path, held: list[str]) -> None:
    """24.11 prints MailUser=/TresPerJob= right after StdOut= (found by the property test above)."""
    site = load_site(DEV_SITE)
    job = resolve(JobSpec(image=cluster.image("tiny_sif"), name="mail", time_min=5, gpus=1,
                          output="o ut.log", extra_sbatch=["--mail-type=END"]), site)  # fmt: skip
    job_id = SlurmCli(_held(held)).submit(render(job), cwd=str(job_dir))
    _assert_recorded_as_explained(job, job_id, job_dir)
    assert _record(job_id)["StdOut"] == f"{job_dir}/o ut.log"


def test_login_env_cannot_change_the_job_root(
    cluster: Cluster, job_dir: Path, monkeypatch: pytest.MonkeyPatch, held: list[str]
) -> None:
    _set_login_env(monkeypatch)
    site = load_site(DEV_SITE)
    job = resolve(JobSpec(image=cluster.image("tiny_sif"), name="envcheck", time_min=5), site)
    assert "# Set here and cleared for sbatch: SBATCH_ACCOUNT, " in render(job, explain=True, environ=os.environ)
    job_id = SlurmCli(_held(held)).submit(render(job), cwd=str(job_dir))
    _assert_recorded_as_explained(job, job_id, job_dir)
    # without hpcjobs clearing them, the same script goes to gpu with 3 minutes: the check can fail
    r = subprocess.run(["sbatch", "--parsable", "--hold", f"--chdir={job_dir}"], input=render(job), text=True,
                       capture_output=True, check=True)  # fmt: skip
    held.append(r.stdout.strip())
    rec = _record(held[-1])
    assert (rec["Partition"], rec["TimeLimit"], rec["JobName"]) == ("gpu", "00:03:00", "from-env")


def test_login_env_cannot_change_the_job_as_user(cluster: Cluster, job_dir: Path, user_cli: UserCli) -> None:  # noqa: F811
    (job_dir / "job.yaml").write_text(yaml.safe_dump({
        "image": cluster.image("tiny_sif"), "name": "userenv", "time_min": 5,
        "entrypoint": ["/bin/sh", "-c", 'echo "mpi=${SLURM_MPI_TYPE-unset} part=${SBATCH_PARTITION-unset}"'],
    }))  # fmt: skip
    explained = user_cli("render", "job.yaml", "--explain", cwd=job_dir, env=LOGIN_ENV)
    assert explained.returncode == 0, explained.stderr
    assert "#SBATCH --partition=cpu  # <- site default_partition" in explained.stdout
    assert "SBATCH_PARTITION, SBATCH_TIMELIMIT, SLURM_CPU_BIND, SLURM_MPI_TYPE, SRUN_EXPORT_ENV" in explained.stdout
    r = user_cli("submit", "job.yaml", "--wait", "--json", "--poll-s", "0.2", cwd=job_dir, env=LOGIN_ENV)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    assert "SBATCH_PARTITION" in r.stderr and "input_env_cleared" in r.stderr  # the user is told
    rec = _record(job_id)
    assert (rec["Partition"], rec["TimeLimit"], rec["JobName"]) == ("cpu", "00:05:00", "userenv")
    assert rec["UserId"].startswith(f"{cluster.test_user}(")
    out = (job_dir / f"hpcjobs-userenv-{job_id}.out").read_text()
    assert "mpi=unset part=unset" in out


def test_hostile_job_file_refused_as_user(cluster: Cluster, job_dir: Path, user_cli: UserCli) -> None:  # noqa: F811
    cases = [{"extra_sbatch": ["--exclusive --partition gpu --account evil"]}, {"output": "o.out\r--partition=gpu"},
             {"binds": ["/etc:/hostetc:ro"]}, {"name": "x\x1b[2J"}]  # fmt: skip
    for i, fields in enumerate(cases):
        (job_dir / f"bad{i}.yaml").write_text(yaml.safe_dump({"image": cluster.image("tiny_sif"), **fields}))
        r = user_cli("submit", f"bad{i}.yaml", cwd=job_dir)
        assert r.returncode == 2 and r.stdout == "", (fields, r.stderr)
        assert r.stderr.startswith("hpcjobs: error: ") and r.stderr.count("\n") == 1, r.stderr
    (job_dir / "latin1.yaml").write_bytes(b"image: /x.sif\nname: caf\xe9\n")
    r = user_cli("submit", "latin1.yaml", cwd=job_dir)
    assert r.returncode == 2 and "not UTF-8" in r.stderr and r.stderr.count("\n") == 1


# ------------------------------------------------------------------------- bind policy (items 8-10, 12)


@pytest.fixture
def denied(job_dir: Path) -> Path:
    """A directory tree a site denies, with a marker file at each place a variable could mount."""
    d = job_dir / "denied"
    for sub in ("bind", "overlay/upper/m_overlay", "overlay/work", "work/var_tmp", "libs", "fuse"):
        (d / sub).mkdir(parents=True)
    for sub in ("bind", "overlay/upper/m_overlay", "work/var_tmp", "libs", "fuse"):
        (d / sub / "marker").write_text(f"LEAK {sub}\n")
    (d / "img.sqfs").unlink(missing_ok=True)
    subprocess.run(["mksquashfs", str(d / "fuse"), str(d / "img.sqfs"), "-quiet", "-noappend"], check=True,
                   capture_output=True)  # fmt: skip
    conf = Path("/etc/apptainer/apptainer.conf").read_text() + f"\nbind path = {d}/bind:/m_conf\n"
    (d / "apptainer.conf").write_text(conf)
    subprocess.run(["chmod", "-R", "a+rX", str(job_dir)], check=True)
    return d


# each variable's value, and the file it makes appear in the container (apptainer 1.4.5)
def _mount_vars(d: Path) -> dict[str, tuple[str, str]]:
    return {
        "BIND": (f"{d}/bind:/m_bind", "/m_bind/marker"),
        "BINDPATH": (f"{d}/bind:/m_bindpath", "/m_bindpath/marker"),
        "MOUNT": (f"type=bind,source={d}/bind,destination=/m_mount", "/m_mount/marker"),
        "HOME": (f"{d}/bind:/m_home", "/m_home/marker"),
        "OVERLAY": (f"{d}/overlay", "/m_overlay/marker"),
        "WORKDIR": (f"{d}/work", "/var/tmp/marker"),  # with --contain (APPTAINER_CONTAIN below)
        "CONTAINLIBS": (f"{d}/libs/marker", "/.singularity.d/libs/marker"),
        "FUSESPEC": (f"host:squashfuse {d}/img.sqfs /m_fuse", "/m_fuse/marker"),
        "CONFIG_FILE": (f"{d}/apptainer.conf", "/m_conf/marker"),
    }


PROBE = 'for f in "$@"; do if [ -e "$f" ]; then echo "LEAK $f"; fi; done; echo probe-done'


def _site_file(job_dir: Path, denied: Path) -> Path:
    data = yaml.safe_load(DEV_SITE.read_text())
    data["policy"] = {"deny_bind_sources": ["/etc/munge", str(denied)]}
    data["defaults"]["node_local_paths"] = [str(job_dir / "local")]
    path = job_dir / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("prefix", ["APPTAINER", "SINGULARITY"])
def test_every_path_variable_works_in_apptainer_and_is_cleared_by_the_job(
    cluster: Cluster, job_dir: Path, denied: Path, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    variables = _mount_vars(denied)
    assert set(variables) <= set(RUNTIME_PATH_ENV_KEYS)
    sif = cluster.image("tiny_sif")
    # control: each variable, set alone, really mounts its path in real apptainer
    for key, (value, path) in variables.items():
        env = {**os.environ, f"{prefix}_{key}": value, **({f"{prefix}_CONTAIN": "1"} if key == "WORKDIR" else {})}
        r = subprocess.run(["apptainer", "exec", sif, "cat", path], env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
        assert r.stdout.startswith("LEAK"), (key, r.stdout, r.stderr)
    # all of them in the login environment of one hpcjobs job: none reaches the container
    for key, (value, _) in variables.items():
        if key not in ("HOME", "CONFIG_FILE"):  # these two replace others; each is checked alone above
            monkeypatch.setenv(f"{prefix}_{key}", value)
    monkeypatch.setenv(f"{prefix}_CONTAIN", "1")
    paths = [p for _, p in variables.values()]
    spec = ContainerJob(image=sif, name="bindenv", time_min=5, entrypoint=["/bin/sh", "-c", PROBE, "probe", *paths])
    job = spec.submit(_site_file(job_dir, denied), cwd=job_dir)
    assert wait_job(job.job_id)[0] == "COMPLETED"
    out = (job_dir / f"hpcjobs-bindenv-{job.job_id}.out").read_text()
    assert "probe-done" in out and "LEAK" not in out, out
    for key in ("HOME", "CONFIG_FILE"):  # the two left out above, in a job of their own
        monkeypatch.setenv(f"{prefix}_{key}", variables[key][0])
    job = spec.submit(_site_file(job_dir, denied), cwd=job_dir)
    assert wait_job(job.job_id)[0] == "COMPLETED"
    out = (job_dir / f"hpcjobs-bindenv-{job.job_id}.out").read_text()
    assert "probe-done" in out and "LEAK" not in out, out


def test_bind_policy_as_user(cluster: Cluster, job_dir: Path, denied: Path, user_cli: UserCli) -> None:  # noqa: F811
    site = _site_file(job_dir, denied)
    sif = cluster.image("tiny_sif")
    user = cluster.test_user
    (job_dir / "local").mkdir()
    (job_dir / "link-to-denied").symlink_to(denied)
    # control: the issue's APPTAINER_MOUNT really mounts for this user
    mount = f"APPTAINER_MOUNT={_mount_vars(denied)['MOUNT'][0]}"
    r = subprocess.run(["runuser", "-u", user, "--", "env", mount, "apptainer", "exec", sif, "cat", "/m_mount/marker"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.stdout.startswith("LEAK"), r.stderr
    refused = {
        "ancestor": [f"{job_dir}:/j:ro"],  # item 8: the parent of a denied directory
        "normalised": [f"{job_dir}/local/../link-to-denied:/l"],  # item 10: not node-local once normalised
        "etc": ["/etc:/hostetc:ro"],
    }
    for label, binds in refused.items():
        (job_dir / f"{label}.yaml").write_text(yaml.safe_dump({"image": sif, "binds": binds}))
        r = user_cli("--site", str(site), "submit", f"{label}.yaml", cwd=job_dir)
        assert r.returncode == 2 and "deny_bind_sources" in r.stderr and r.stderr.count("\n") == 1, (label, r.stderr)
    # item 12: the object form with ':' in both paths works at run time; the login env's mounts don't
    colon = job_dir / "with:colon"
    colon.mkdir()
    (colon / "data").write_text("through the colon\n")
    subprocess.run(["chmod", "-R", "a+rX", str(colon)], check=True)
    (job_dir / "ok.yaml").write_text(yaml.safe_dump({
        "image": sif, "name": "userbind", "binds": [{"src": str(colon), "dst": "/in:side", "mode": "ro"}],
        "entrypoint": ["/bin/sh", "-c", "cat /in:side/data; " + PROBE, "probe", "/m_mount/marker", "/m_bind/marker"],
    }))  # fmt: skip
    env = {"APPTAINER_MOUNT": _mount_vars(denied)["MOUNT"][0], "APPTAINER_BIND": _mount_vars(denied)["BIND"][0]}
    r = user_cli("--site", str(site), "submit", "ok.yaml", "--wait", "--json", "--poll-s", "0.2", cwd=job_dir, env=env)
    assert r.returncode == 0, r.stderr
    out = (job_dir / f"hpcjobs-userbind-{json.loads(r.stdout)['job_id']}.out").read_text()
    assert "through the colon" in out and "probe-done" in out and "LEAK" not in out, out


def test_status_and_wait_agree_on_an_overflowing_id(cluster: Cluster, job_dir: Path, user_cli: UserCli) -> None:  # noqa: F811
    status = user_cli("status", "99999999999999999999", cwd=job_dir)
    wait = user_cli("wait", "99999999999999999999", cwd=job_dir)
    assert status.returncode == wait.returncode == 2 and status.stderr == wait.stderr, (status, wait)
    assert status.stderr.startswith("hpcjobs: error: not a Slurm job id") and status.stderr.count("\n") == 1
