"""Ascend detection: the npu-smi parser on its table format (fixtures reconstructed from the
format Huawei documents, not recorded on silicon here), device files, and this machine."""

from pathlib import Path

import pytest

from sdk_ascend._smi import describe, parse_info, probe

DATA = Path(__file__).parent / "data"


def test_910b_table():
    chips = parse_info((DATA / "npu-smi-info-910b.txt").read_text())
    assert [c.npu for c in chips] == [0, 1]
    assert chips[1].name == "910B3" and chips[1].power_w == 95.7 and chips[1].temperature_c == 37
    assert chips[1].bus_id == "0000:01:00.0"
    assert chips[1].hbm_used == 21540 * 2**20 and chips[1].hbm_total == 65536 * 2**20
    devices = describe(chips, "npu-smi 23.0.rc3")
    assert [d.id for d in devices] == ["npu:0", "npu:1"]
    assert devices[0].name == "Ascend 910B3" and devices[0].memory_free == (65536 - 3380) * 2**20
    assert devices[0].compute_units == 20 and devices[0].peak_flops["float16"] == pytest.approx(313e12)


def test_910a_table_with_warning_health():
    [chip] = parse_info((DATA / "npu-smi-info-910a.txt").read_text())
    assert (chip.npu, chip.name, chip.health) == (4, "910A", "Warning")
    assert chip.hbm_total == 32768 * 2**20 and chip.hbm_used == 30 * 2**20
    assert describe([chip])[0].compute_units == 32


def test_a3_two_dies_per_npu_unknown_name_gets_no_figures():
    chips = parse_info((DATA / "npu-smi-info-a3.txt").read_text())
    assert [(c.npu, c.chip) for c in chips] == [(0, 0), (0, 1)]
    assert chips[1].power_w is None and chips[1].temperature_c == 36
    devices = describe(chips)
    assert devices[0].name == "Ascend910" and devices[1].extra["chip_id"] == 1
    assert devices[0].peak_flops == {} and devices[0].compute_units is None  # never guessed


def test_garbage_gives_no_chips():
    assert parse_info("npu-smi: command failed\n| nothing | here |\n") == []


def test_device_files_without_the_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npu-smi on the path
    (tmp_path / "dev").mkdir()
    for name in ("davinci0", "davinci1", "davinci_manager", "davinci10"):
        (tmp_path / "dev" / name).write_text("")
    devices = probe(tmp_path)
    assert [d.id for d in devices] == ["npu:0", "npu:1", "npu:2"]
    assert devices[2].extra["device_file"].endswith("davinci10")


def test_this_machine_has_no_npu():
    assert probe() == []
