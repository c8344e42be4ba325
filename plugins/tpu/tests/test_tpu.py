"""TPU detection on file trees laid out as real TPU VMs lay them out (reconstructed from the
public driver and runtime conventions; not recorded on silicon), and on this machine."""

import pytest

from sdk_tpu._detect import probe


def tree(tmp_path, pci=(), dev=(), subsystem="0x0000"):
    for i, device_id in enumerate(pci):
        d = tmp_path / f"sys/bus/pci/devices/0000:00:{4 + i:02x}.0"
        d.mkdir(parents=True)
        (d / "vendor").write_text("0x1ae0\n")
        (d / "device").write_text(f"{device_id}\n")
        (d / "subsystem_device").write_text(f"{subsystem}\n")
    other = tmp_path / "sys/bus/pci/devices/0000:00:01.0"
    other.mkdir(parents=True)
    (other / "vendor").write_text("0x8086\n")
    (other / "device").write_text("0x7111\n")
    for name in dev:
        (tmp_path / "dev" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dev" / name).write_text("")
    return tmp_path


def test_v4_vm_with_four_chips(tmp_path):
    root = tree(tmp_path, pci=["0x005e"] * 4, dev=[f"accel{i}" for i in range(4)])
    devices = probe(root, {"TPU_ACCELERATOR_TYPE": "v4-8", "TPU_WORKER_ID": "0"})
    assert [d.id for d in devices] == ["tpu:0", "tpu:1", "tpu:2", "tpu:3"]
    d = devices[0]
    assert d.name == "TPU v4" and d.memory_total == 32 * 2**30 and d.peak_flops["bfloat16"] == 275e12
    assert d.extra["device_file"].endswith("dev/accel0") and d.driver == "v4-8"


def test_v5e_from_vfio_and_environment_only(tmp_path):
    root = tree(tmp_path, dev=["vfio/0", "vfio/1", "vfio/vfio"])
    devices = probe(root, {"TPU_ACCELERATOR_TYPE": "v5litepod-4"})
    assert len(devices) == 2 and devices[0].name == "TPU v5e" and devices[0].memory_total == 16 * 2**30


@pytest.mark.parametrize("device_id, name", [("0x0062", "TPU v5p"), ("0x006f", "TPU v6e (Trillium)")])
def test_generation_from_pci_id(tmp_path, device_id, name):
    assert probe(tree(tmp_path, pci=[device_id]), {})[0].name == name


@pytest.mark.parametrize("subsystem, name, hbm", [("0x004e", "TPU v2", 16), ("0x004f", "TPU v3", 32)])
def test_v2_and_v3_share_a_device_id_and_differ_by_subsystem(tmp_path, subsystem, name, hbm):
    [d] = probe(tree(tmp_path, pci=["0x0027"], subsystem=subsystem), {})
    assert d.name == name and d.memory_total == hbm * 2**30


def test_unnamed_google_functions_are_not_taken_for_tpus(tmp_path):
    assert probe(tree(tmp_path, pci=["0x0056"]), {}) == []


def test_no_tpu_means_no_devices(tmp_path):
    assert probe(tree(tmp_path), {}) == []
    assert probe(tree(tmp_path / "x", dev=["accel0"]), {}) == []  # a device file alone names no chip
    assert probe("/", {}) == []  # this machine
