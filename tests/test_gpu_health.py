"""Passive GPU checks (grid_gpu_health) on the real H100 capture and on sick variants
derived from it in the same format (tests/gpu_variants.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from grid_ops.module_utils import grid_gpu_health as health
from tests import gpu_variants as variants


def _failed(xml: str, expected: int | None = None) -> list[tuple[str, str, object]]:
    return [
        (c["check"], c["severity"], c["gpu"]) for c in health.checks(health.parse(xml), expected)
    ]


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_the_real_h100_passes_every_check(state: str) -> None:
    xml = (variants.FIXTURE.parent / f"nvidia-smi-q.{state}.xml").read_text()
    report = health.parse(xml)
    assert report["driver_version"] == "580.159.04" and report["cuda_version"] == "13.0"
    assert report["attached_gpus"] == 1
    (gpu,) = report["gpus"]  # type: ignore[misc]
    assert gpu["uuid"] == "GPU-0bc60ea9-73e2-6fa3-43f3-d0badee38d81"
    assert gpu["persistence_mode"] is True and gpu["ecc_uncorrectable_volatile"] == 0
    assert gpu["retired_pages_pending"] is None  # N/A on Hopper: rows are remapped instead
    assert gpu["remapped_rows_pending"] is False and gpu["slowdowns"] == []
    # the busy capture runs at its power cap (SW power cap active): that is not a fault
    assert _failed(xml) == [] and _failed(xml, expected=1) == []


@pytest.mark.parametrize(
    ("variant", "expected", "failed"),
    [
        (variants.ecc_errors, None, [("ecc_uncorrectable", "sick", 0)]),
        (variants.remap_pending, None, [("remap_pending", "sick", 0)]),
        (variants.thermal_slowdown, None, [("hw_thermal_slowdown", "sick", 0)]),
        (variants.persistence_off, None, [("persistence_mode", "warning", 0)]),
        (variants.one_gpu_lost, None, [("gpu_count", "sick", None)]),
        (variants.real, 2, [("gpu_count", "sick", None)]),  # the config gives 2
        (variants.two_gpus, 2, []),
        (variants.not_reported, 1, []),  # unknown is not sick
        (variants.fields_missing, 1, []),
    ],
)
def test_a_sick_card_fails_its_check_by_name_and_severity(
    variant: Callable[[], str], expected: int | None, failed: list[tuple[str, str, object]]
) -> None:
    assert _failed(variant(), expected) == failed


def test_reasons_say_what_is_wrong_and_what_to_do() -> None:
    (ecc,) = health.checks(health.parse(variants.ecc_errors(5)), None)
    assert ecc["reason"] == "GPU 0: 5 uncorrectable ECC error(s) since the driver loaded"
    (count,) = health.checks(health.parse(variants.real()), 2)
    assert count["reason"] == "1 GPU(s) found, the config gives 2"
    (remap,) = health.checks(health.parse(variants.remap_pending()), None)
    assert "reset the GPU" in remap["reason"]
    driver = health.driver_failed(variants.DRIVER_ERROR.strip())
    assert driver["check"] == "driver" and driver["severity"] == "sick"


@pytest.mark.parametrize("text", ["", variants.DRIVER_ERROR, "<other/>"])
def test_output_that_is_not_the_xml_is_a_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match="nvidia-smi -q -x printed"):
        health.parse(text)


@pytest.mark.parametrize("variant", [variants.not_reported, variants.fields_missing])
def test_fields_a_card_does_not_report_read_as_unknown(variant: Callable[[], str]) -> None:
    (gpu,) = health.parse(variant())["gpus"]  # type: ignore[misc]
    for field in (
        "persistence_mode",
        "ecc_uncorrectable_volatile",
        "remapped_rows_pending",
        "remapped_rows_failure",
        "memory_unrepairable",
        "memory_repair_pending",
    ):
        assert gpu[field] is None, field
    assert gpu["slowdowns"] == []
