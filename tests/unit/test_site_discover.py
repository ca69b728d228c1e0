"""``hpcjobs site discover``: parsing real Slurm output (captured on the dev cluster, Slurm 22.05.8)
and a synthetic A100 cluster, through a fake Runner. tests/cluster/test_site_cluster.py runs it
against the live cluster."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcjobs.cli_site import site
from hpcjobs.config.loader import load_site_text
from hpcjobs.errors import RunnerError, SchedulerError
from hpcjobs.runner import Call, Completed, RecordingRunner
from hpcjobs.site import discover as disc

# --- captured on the dev cluster (scripts/dev-cluster up), verbatim -------------------------------
DEV_PARTITIONS = (
    "PartitionName=cpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 "
    "PriorityTier=1 "
    "RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=16 "
    "TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED "
    "TRES=cpu=16,mem=24105M,node=1,billing=16\n"
    "PartitionName=gpu AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 "
    "PriorityTier=1 "
    "RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=16 "
    "TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED "
    "TRES=cpu=16,mem=24105M,node=1,billing=16\n"
)
DEV_NODES = (
    "NodeName=vm Arch=x86_64 CoresPerSocket=16  CPUAlloc=0 CPUEfctv=16 CPUTot=16 CPULoad=1.23 "
    "AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=127.0.0.1 NodeHostName=vm "
    "Version=22.05.8 OS=Linux 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=24105 AllocMem=0 "
    "FreeMem=22970 Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A "
    "Partitions=cpu,gpu  BootTime=2026-11-28T08:16:22 SlurmdStartTime=2026-11-28T08:24:57 "
    "LastBusyTime=2026-11-28T08:31:23 CfgTRES=cpu=16,mem=24105M,billing=16 AllocTRES= CapWatts=n/a "
    "CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s\n"
)
DEV_CONFIG = """\
Configuration data as of 2026-11-28T08:40:00
AccountingStorageEnforce = none
ClusterName             = hpcjobs-dev
DefMemPerCPU            = 100
GresTypes               = gpu
MpiDefault              = none
SelectType              = select/cons_tres
SelectTypeParameters    = CR_CORE_MEMORY
SLURM_VERSION           = 22.05.8
"""
DEV_MPI = (
    "MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\nspecific pmix plugin versions available: pmix_v4\n"
)

# --- a synthetic A100 cluster in the same format (typed gres, limits, a drained node) --------------
A100_PARTITIONS = (
    "PartitionName=a100 AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=01:00:00 MaxNodes=4 MaxTime=2-00:00:00 MinNodes=0 MaxCPUsPerNode=UNLIMITED Nodes=g[01-03] "
    "State=UP TotalCPUs=384 TotalNodes=3 DefMemPerNode=UNLIMITED MaxMemPerNode=512000 "
    "TRES=cpu=384,mem=1500G,node=3,billing=384,gres/gpu=24\n"
    "PartitionName=login-cpu AllowGroups=hpc AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL "
    "Default=NO QoS=N/A "
    "DefaultTime=NONE MaxNodes=UNLIMITED MaxTime=04:00:00 MinNodes=0 MaxCPUsPerNode=UNLIMITED Nodes=c[01-02] "
    "State=UP TotalCPUs=128 TotalNodes=2 DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=128\n"
    "PartitionName=mixed AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    "DefaultTime=NONE MaxNodes=UNLIMITED MaxTime=30 MinNodes=0 MaxCPUsPerNode=UNLIMITED Nodes=g03,m01 "
    "State=DOWN TotalCPUs=192 TotalNodes=2 DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=192\n"
)
A100_NODES = "".join(
    f"NodeName={name} Arch=x86_64 CoresPerSocket=64 CPUAlloc=0 CPUEfctv={cpus} CPUTot={cpus} Gres={gres} "
    f"NodeAddr={name} OS=Linux 5.14.0 #1 SMP RealMemory={mem} Sockets=2 State={state} "
    f"Partitions={parts} {extra}\n"
    for name, cpus, gres, mem, state, parts, extra in [
        ("g01", 128, "gpu:a100:8(S:0-1)", 515000, "IDLE", "a100", ""),
        ("g02", 128, "gpu:a100:8(S:0-1)", 515000, "MIXED", "a100", ""),
        (
            "g03",
            128,
            "gpu:a100:8(S:0-1),mps:a100:800",
            515000,
            "DRAIN",
            "a100,mixed",
            "Reason=bad DIMM, see ticket 42 [root@2026-01-01T00:00:00]",
        ),
        ("c01", 64, "(null)", 256000, "IDLE", "login-cpu", ""),
        ("c02", 64, "(null)", 256000, "IDLE", "login-cpu", ""),
        ("m01", 64, "gpu:mi250:4", 256000, "IDLE", "mixed", ""),
    ]
)


class FakeSlurm(RecordingRunner):
    """A Runner that answers the four discover commands from fixed text."""

    def __init__(self, outputs: Mapping[str, Completed | Exception]) -> None:
        super().__init__(answer=self._answer)
        self.outputs = outputs

    def _answer(self, call: Call) -> Completed:
        out = self.outputs[" ".join(call.argv)]
        if isinstance(out, Exception):
            raise out
        return out


def ok(text: str, argv: str = "") -> Completed:
    return Completed(tuple(argv.split()), 0, text, "")


def dev_slurm() -> FakeSlurm:
    return FakeSlurm(
        {
            "scontrol -o show partition": ok(DEV_PARTITIONS),
            "scontrol -o show node": ok(DEV_NODES),
            "scontrol show config": ok(DEV_CONFIG),
            "srun --mpi=list": ok(DEV_MPI),
        }
    )


def test_parse_records_keeps_values_with_spaces() -> None:
    (node,) = disc.parse_records(DEV_NODES)
    assert node["OS"] == "Linux 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0"
    assert node["Gres"] == "gpu:2" and node["Partitions"] == "cpu,gpu" and node["AllocTRES"] == ""
    parts = disc.parse_records(DEV_PARTITIONS)
    assert [p["PartitionName"] for p in parts] == ["cpu", "gpu"]
    assert parts[0]["TRES"] == "cpu=16,mem=24105M,node=1,billing=16"
    g03 = disc.parse_records(A100_NODES)[2]
    assert g03["Reason"] == "bad DIMM, see ticket 42 [root@2026-01-01T00:00:00]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("gpu:2", {None: 2}), ("gpu:a100:8(S:0-1)", {"a100": 8}), ("gpu:a100:8(S:0,1),mps:a100:800", {"a100": 8}),
     ("gpu:a100:2,gpu:v100:2", {"a100": 2, "v100": 2}), ("(null)", {}), ("mps:100", {}), ("gpu:tesla:no_consume:4",
     {"tesla": 4})],
)  # fmt: skip
def test_parse_gres(text: str, expected: dict[str | None, int]) -> None:
    assert disc.parse_gres(text) == expected


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("UNLIMITED", None), ("INFINITE", None), ("NONE", None), ("30", 30), ("01:00:00", 60), ("2-00:00:00", 2880),
     ("1-12", 2160), ("0:90", 1), ("45:30", 45), ("1-00:30:00", 1470)],
)  # fmt: skip
def test_parse_time(text: str, minutes: int | None) -> None:
    assert disc.parse_time_min(text) == minutes


def test_parse_mpi_list() -> None:
    assert disc.parse_mpi_list(DEV_MPI) == ["pmix", "none", "cray_shasta", "pmi2"]
    assert disc.parse_mpi_list("srun: MPI types are...\nsrun: none\nsrun: pmi2\n") == ["none", "pmi2"]


def test_dev_cluster_draft() -> None:
    slurm = dev_slurm()
    text = disc.discover(slurm)
    assert slurm.argvs() == [
        ("scontrol", "-o", "show", "partition"),
        ("scontrol", "-o", "show", "node"),
        ("scontrol", "show", "config"),
        ("srun", "--mpi=list"),
    ]
    cfg = load_site_text(text, "draft.yaml")  # it validates
    assert cfg.name == "hpcjobs-dev"
    assert cfg.default_partition == "cpu" and cfg.gpu_partition == "gpu"
    cpu, gpu = cfg.partitions["cpu"], cfg.partitions["gpu"]
    assert cpu.limits.max_gpus_per_node == 0  # a CPU partition on the GPU node keeps GPU jobs off
    assert gpu.limits.max_gpus_per_node == 2
    assert (gpu.gpu.flag, gpu.gpu.request, gpu.gpu.type) == ("nv", "gpus", None)
    assert cpu.gpu.flag is None
    for p in (cpu, gpu):
        assert p.limits.max_nodes == 1 and p.limits.max_ntasks == 16 and p.limits.max_cpus_per_task == 16
        assert p.limits.max_mem_gb == 23.54  # 24105 MB / 1024, rounded down to 0.01
        assert round(p.limits.max_mem_gb * 1024) <= 24105  # as render writes --mem: never above RealMemory
        assert p.limits.max_time_min is None  # MaxTime=UNLIMITED
    assert cfg.defaults.mpi.default == "pmix" and cfg.defaults.mpi.env == {"PMIX_MCA_gds": "hash"}
    # the reasons are in the comments
    assert "also offered by partition gpu" in text and "Set 2 to allow GPU jobs here" in text
    assert "# max_time_min: none (MaxTime=UNLIMITED)" in text
    assert text.startswith("# Draft site config for cluster hpcjobs-dev")


def test_a100_cluster_draft() -> None:
    facts = disc.facts_from_outputs(
        A100_PARTITIONS, A100_NODES, {"ClusterName": "big", "SelectType": "select/cons_res"}, ["pmi2", "none"]
    )
    text = disc.draft_site(facts)
    cfg = load_site_text(text, "draft.yaml")
    a100, cpu, mixed = cfg.partitions["a100"], cfg.partitions["login-cpu"], cfg.partitions["mixed"]
    assert cfg.default_partition == "a100" and cfg.gpu_partition is None  # the default has GPUs
    assert a100.limits.max_nodes == 3  # MaxNodes=4 but only 3 nodes
    assert a100.limits.max_time_min == 2880 and a100.time_min == 60
    assert a100.limits.max_mem_gb == 500.0  # MaxMemPerNode=512000 MB
    assert a100.limits.max_gpus_per_node == 8 and a100.limits.max_ntasks == 384
    assert (a100.gpu.flag, a100.gpu.request, a100.gpu.type) == ("nv", "gres", "a100")  # cons_res: --gres
    assert cpu.limits.max_gpus_per_node == 0 and cpu.limits.max_time_min == 240
    assert "access is restricted in Slurm: AllowGroups=hpc" in text
    # two GPU types: no type requested; an AMD type is not enough to choose rocm for NVIDIA nodes too
    assert mixed.limits.max_gpus_per_node == 8 and mixed.gpu.type is None
    assert "GPU types differ (a100, mi250)" in text and "State=DOWN" in text
    assert cfg.defaults.mpi.default == "pmi2" and cfg.defaults.mpi.env == {}


def test_amd_gpus_get_rocm() -> None:
    nodes = "NodeName=r1 CPUTot=64 Gres=gpu:mi250:4 RealMemory=256000 Partitions=amd\n"
    parts = "PartitionName=amd Default=YES MaxNodes=UNLIMITED MaxTime=UNLIMITED TotalCPUs=64 TotalNodes=1\n"
    cfg = load_site_text(disc.draft_site(disc.facts_from_outputs(parts, nodes, {}, [])), "d.yaml")
    assert cfg.partitions["amd"].gpu.flag == "rocm" and cfg.partitions["amd"].gpu.type == "mi250"
    assert cfg.name == "my-site" and cfg.defaults.mpi.default == "none"


def test_cpu_named_partition_alone_on_gpu_nodes_keeps_its_gpus() -> None:
    nodes = "NodeName=n1 CPUTot=8 Gres=gpu:2 RealMemory=8000 Partitions=cpu\n"
    parts = "PartitionName=cpu Default=YES MaxNodes=UNLIMITED MaxTime=UNLIMITED TotalCPUs=8 TotalNodes=1\n"
    text = disc.draft_site(disc.facts_from_outputs(parts, nodes, {}, []))
    assert load_site_text(text, "d.yaml").partitions["cpu"].limits.max_gpus_per_node == 2
    assert "although the name says CPU: set 0" in text


def test_optional_commands_may_fail() -> None:
    slurm = dev_slurm()
    slurm.outputs = {
        **slurm.outputs,
        "scontrol show config": Completed((), 1, "", "denied"),
        "srun --mpi=list": RunnerError("srun: program not found on PATH"),
    }
    cfg = load_site_text(disc.discover(slurm), "d.yaml")
    assert cfg.name == "my-site" and cfg.defaults.mpi.default == "none"


def test_controller_down_is_one_clear_error() -> None:
    slurm = FakeSlurm(
        {
            "scontrol -o show partition": Completed(
                (), 1, "", "slurm_load_partitions: Unable to contact slurm controller (connect failure)\n"
            )
        }
    )
    with pytest.raises(SchedulerError) as info:
        disc.discover(slurm)
    assert str(info.value) == (
        "scontrol -o show partition failed: slurm_load_partitions: Unable to contact slurm controller (connect failure)"
    )


def test_no_partitions() -> None:
    slurm = dev_slurm()
    slurm.outputs = {**slurm.outputs, "scontrol -o show partition": ok("No partitions in the system\n")}
    with pytest.raises(SchedulerError, match="no partitions"):
        disc.discover(slurm)


def test_cli_discover_stdout_and_output_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import hpcjobs.runner

    monkeypatch.setattr(hpcjobs.runner, "default_runner", dev_slurm)
    result = CliRunner().invoke(site, ["discover"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["partitions"]["gpu"]["limits"]["max_gpus_per_node"] == 2

    out = tmp_path / "site.yaml"
    result = CliRunner().invoke(site, ["discover", "--output", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == f"wrote {out}; check it with: hpcjobs site validate {out}\n"
    assert CliRunner().invoke(site, ["validate", str(out)]).stdout == f"{out}: ok\n"

    result = CliRunner().invoke(site, ["discover", "--output", str(out)])
    assert result.exit_code == 2 and result.stderr == f"hpcjobs: error: {out}: exists; pass --force to overwrite it\n"
    assert CliRunner().invoke(site, ["discover", "--output", str(out), "--force"]).exit_code == 0


def test_cli_discover_without_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    import hpcjobs.runner

    monkeypatch.setattr(
        hpcjobs.runner,
        "default_runner",
        lambda: FakeSlurm({"scontrol -o show partition": RunnerError("scontrol: program not found on PATH")}),
    )
    result = CliRunner().invoke(site, ["discover"])
    assert result.exit_code == 2
    assert result.stderr == "hpcjobs: error: scontrol: program not found on PATH\n"
