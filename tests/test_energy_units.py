"""A job's GPU energy (grid_ops.runtime.energy): how a rank's meter adds up nvidia-smi's
power readings, against the replayed H100 nvidia-smi (tests/fake_nvidia_smi.py) as the
rank runs it. The same meter runs for real in the GPU lab's users test
(tests/test_gpu_lab.py), where the queue records it and 'grid-ops usage' reports it."""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from grid_ops.runtime import energy
from grid_ops.runtime import jobs as runtime_jobs
from grid_ops.runtime.jobqueue import Job
from tests import fake_nvidia_smi

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gpu-h100"
BUSY = (FIXTURES / "nvidia-smi-q.busy.xml").read_text()
BUSY_WATTS = 671.04  # the capture's instant_power_draw


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_reading_counts_until_the_next_and_the_last_until_the_stop() -> None:
    clock, published = Clock(), []
    meter = energy.Meter(lambda: None, published.append, clock=clock)
    meter.sample(0.0, 100.0)
    meter.sample(2.0, 200.0)
    meter.sample(5.0, None)  # nvidia-smi missed one: [5, 6] counts nothing
    meter.sample(6.0, 100.0)
    clock.now = 7.0
    assert meter.stop() == pytest.approx(100 * 2 + 200 * 3 + 100 * 1)
    assert published == [pytest.approx(900.0)]  # the stop publishes the total


def test_a_shared_gpu_counts_its_share_and_no_reading_is_unknown_not_zero() -> None:
    clock = Clock()
    half = energy.Meter(lambda: None, lambda j: None, share=0.5, clock=clock)
    half.sample(0.0, 400.0)
    clock.now = 10.0
    assert half.stop() == pytest.approx(2000.0)
    blind = energy.Meter(lambda: None, lambda j: None, clock=clock)
    blind.sample(0.0, None)
    assert blind.stop() is None


def test_the_meter_reads_on_its_own_thread_and_publishes_a_growing_total() -> None:
    published: list[float] = []
    began = time.monotonic()
    meter = energy.Meter(lambda: 50.0, published.append, period=0.01).start()
    time.sleep(0.2)
    joules = meter.stop()
    took = time.monotonic() - began
    assert joules is not None and 0 < joules <= 50.0 * took
    assert joules >= 50.0 * 0.1  # most of the time it ran was counted
    assert published == sorted(published) and published[-1] == joules
    assert len(published) > 3


def test_a_publish_that_fails_does_not_stop_the_meter() -> None:
    def away(_: float) -> None:
        raise ConnectionError("GCS away")

    clock = Clock()
    meter = energy.Meter(lambda: None, away, clock=clock)
    meter.sample(0.0, 10.0)
    clock.now = 1.0
    assert meter.stop() == pytest.approx(10.0)


def _smi(tmp_path: Path, xml: str, fail: bool = False) -> str:
    script = tmp_path / "nvidia-smi"
    shutil.copyfile(fake_nvidia_smi.__file__, script)
    script.chmod(0o755)
    (tmp_path / "nvidia-smi.xml").write_text(xml)
    if fail:
        (tmp_path / "nvidia-smi.fail").write_text("")
    return str(script)


def test_power_is_read_from_nvidia_smi_for_the_ranks_own_gpus(tmp_path: Path) -> None:
    smi = _smi(tmp_path, BUSY)
    assert energy.read_watts(smi, [0]) == pytest.approx(BUSY_WATTS)
    assert energy.read_watts(smi, [1]) is None  # not this node's GPU: nothing measured


def test_no_power_reading_or_a_lost_driver_measures_nothing(tmp_path: Path) -> None:
    no_power = BUSY.replace("<instant_power_draw>671.04 W</instant_power_draw>",
                            "<instant_power_draw>N/A</instant_power_draw>")  # fmt: skip
    assert no_power != BUSY
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert energy.read_watts(_smi(tmp_path / "a", no_power), [0]) is None
    assert energy.read_watts(_smi(tmp_path / "b", BUSY, fail=True), [0]) is None


def test_a_rank_without_gpus_or_a_queued_job_has_no_meter(tmp_path: Path) -> None:
    smi = _smi(tmp_path, BUSY)
    assert energy.for_rank("", 1, 0, 1.0, smi) is None  # 'job launch' outside the queue
    assert energy.for_rank("j", 1, 0, 0.0, smi) is None  # a CPU job
    assert energy.for_rank("j", 1, 0, 1.0, str(tmp_path / "missing")) is None


def test_the_launch_line_names_the_configured_nvidia_smi_as_one_argument() -> None:
    job = Job(id="g-1", submitter="u", submitted_at=1.0, nodes=2, gpus_per_node=1.0,
              command=("python", "t.py"))  # fmt: skip
    odd = "~/bin/my smi; rm -rf ~"
    argv = runtime_jobs.launch_argv(job, "g-1-1", 1, ("a", "b"), False, odd)
    assert argv[argv.index("--nvidia-smi") + 1] == odd
    assert shlex.split(shlex.join(argv)) == argv  # one quoted word on Ray's entrypoint line
    cpu = runtime_jobs.launch_argv(replace(job, gpus_per_node=0.0), "g-1-1", 1, ("a", "b"),
                                   False, odd)  # fmt: skip
    assert "--nvidia-smi" not in cpu
    assert "--nvidia-smi" not in runtime_jobs.launch_argv(job, "g-1-1", 1, ("a", "b"), False)


def test_the_offload_sampler_reads_the_nvidia_smi_the_settings_name_now(tmp_path: Path) -> None:
    """The head's offload sampler asks for the configured nvidia-smi at each sample, so a
    path an apply hands the running controller counts from the next sample on."""
    from grid_ops.runtime import offload

    configured = {"nvidia_smi": str(tmp_path / "none" / "nvidia-smi")}
    sampler = offload.Sampler(lambda: configured["nvidia_smi"])
    assert sampler.sample()["gpu"] is None  # nothing at that path
    configured["nvidia_smi"] = _smi(tmp_path, BUSY)
    assert sampler.sample()["gpu"] == 100.0  # the busy H100's utilization.gpu


class Kv:
    """The head's GCS key-value store as ``collect`` uses it (the lab test reads the real
    one: tests/test_gpu_lab.py)."""

    def __init__(self) -> None:
        self.data: dict[tuple[bytes, bytes], bytes] = {}

    def internal_kv_get(self, key: bytes, namespace: bytes, timeout: float) -> bytes | None:
        return self.data.get((namespace, key))

    def internal_kv_del(self, key: bytes, prefix: bool, namespace: bytes, timeout: float) -> int:
        return 1 if self.data.pop((namespace, key), None) is not None else 0


def test_a_running_attempts_energy_is_read_and_left_an_ended_ones_is_taken() -> None:
    kv = Kv()
    kv.data[energy.NAMESPACE, energy.key("j", 2, 0)] = b"100.5"
    kv.data[energy.NAMESPACE, energy.key("j", 2, 1)] = b"50.0"
    kv.data[energy.NAMESPACE, energy.key("j", 1, 0)] = b"9.0"  # another attempt's
    assert energy.collect(kv, "j", 2, 3, 1.0, take=False) == 150.5  # rank 2: nothing yet
    assert energy.collect(kv, "j", 2, 3, 1.0) == 150.5
    assert energy.collect(kv, "j", 2, 3, 1.0) is None  # taken: gone from the GCS
    assert list(kv.data) == [(energy.NAMESPACE, energy.key("j", 1, 0))]
