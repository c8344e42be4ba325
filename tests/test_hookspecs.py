"""Every hook spec is named sdk_*, typed and documented (datasette's docs test, adapted)."""

import inspect

from sdk_core.plugins import hookspecs

SPECS = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "sdk_core_spec")]


def test_the_four_families_and_their_helpers_are_declared():
    names = {f.__name__ for f in SPECS}
    assert {
        "sdk_probe_devices",
        "sdk_build_model",
        "sdk_make_train_step",
        "sdk_make_predict",
        "sdk_get_weights",
        "sdk_set_weights",
        "sdk_read_memory",
        "sdk_read_power",
        "sdk_add_commands",
        "sdk_framework_info",
        "sdk_reset_peak_memory",
    } <= names


def test_every_hookspec_is_documented_and_typed():
    for spec in SPECS:
        doc = inspect.getdoc(spec) or ""
        assert spec.__name__.startswith("sdk_"), spec.__name__
        assert len(doc.splitlines()) >= 3, f"{spec.__name__} lacks a docstring"
        assert ":return:" in doc, f"{spec.__name__} does not document what it returns"
        firstresult = spec.sdk_core_spec["firstresult"]
        assert ("firstresult" in doc) == firstresult, f"{spec.__name__}: say whether firstresult"
        assert "Collected" in doc or firstresult
        for param in inspect.signature(spec).parameters:
            assert f":param {param}:" in doc, f"{spec.__name__} does not document '{param}'"
        assert inspect.signature(spec).return_annotation is not inspect.Signature.empty


def test_module_holds_only_hookspecs():
    own = [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction) if f.__module__ == hookspecs.__name__]
    assert own == SPECS
