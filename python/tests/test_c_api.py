"""The package without PyTorch: the library's C API through ctypes, configuration and its errors."""

from __future__ import annotations

from conftest import last_json, run_python


def test_import_without_torch_uses_the_bundled_library():
    # torch is made unimportable: nothing here may need it.
    result = run_python(
        """
        import json, os, sys
        sys.modules["torch"] = None
        import xpu_caching_host_allocator as xha
        from xpu_caching_host_allocator import _lib, _build_info

        before = xha.host_memory_stats()
        address = xha.host_caching_allocator_alloc(1000)
        during = xha.host_memory_stats()
        xha.host_caching_allocator_delete(address)
        after = xha.host_memory_stats()
        again = xha.host_caching_allocator_alloc(1000)
        hit = xha.host_memory_stats()
        xha.host_caching_allocator_delete(again)
        try:
            xha.enable()
            enable_error = None
        except RuntimeError as error:
            enable_error = str(error)
        print(json.dumps({
            "library": os.path.realpath(_lib.library_path()),
            "package": os.path.dirname(os.path.realpath(xha.__file__)),
            "versions": [xha.__version__, xha.library_version()],
            "is_enabled": xha.is_enabled(),
            "before": before["allocations.current"],
            "address": address, "again": again,
            "during": [during["active_requests.current"], during["active_bytes.current"], during["requested_bytes.current"],
                       during["num_host_alloc"], during["cache_misses"]],
            "after": [after["active_requests.current"], after["cached_bytes.current"], after["idle_bytes"]],
            "hit": [hit["cache_hits"], hit["num_host_alloc"]],
            "enable_error": enable_error,
            "describe": xha.describe(),
            "stats_string": xha.stats_string(),
        }))
        """
    )
    got = last_json(result)
    assert got["library"].startswith(got["package"] + "/lib/"), got["library"]
    assert got["versions"][0] == got["versions"][1]
    assert got["is_enabled"] is False
    assert got["before"] == 0
    assert got["address"] % 512 == 0 and got["address"] == got["again"]
    # One request of 1000 bytes: a block of 1024 (aligned to 512), from the driver.
    assert got["during"] == [1, 1024, 1000, 1, 1]
    # Freed without a stream: cached at once.
    assert got["after"] == [0, 1024, 1024]
    assert got["hit"] == [1, 1]
    assert "torch" in got["enable_error"]
    assert "device" in got["describe"]
    assert "cache_hits" in got["stats_string"]


def test_configuration_errors_are_python_exceptions_and_change_nothing():
    result = run_python(
        """
        import json, sys
        sys.modules["torch"] = None
        import xpu_caching_host_allocator as xha

        out = {}
        for bad in ("pinned_bogus:1", "pinned_fit:sideways", "pinned_roundup_divisions:3", "no_colon"):
            try:
                xha.configure(bad)
                out[bad] = None
            except ValueError as error:
                out[bad] = [type(error).__name__, str(error), error.code_name]
        try:
            xha.configure(42)
        except TypeError as error:
            out["type"] = str(error)
        # The bad strings changed nothing; this one takes effect at start.
        xha.configure("pinned_fit:rounded")
        address = xha.host_caching_allocator_alloc(1000)
        rounded = xha.host_memory_stats()["active_bytes.current"]
        try:
            xha.configure("pinned_fit:exact")
            out["late"] = None
        except RuntimeError as error:
            out["late"] = [type(error).__name__, str(error), error.code_name, isinstance(error, ValueError)]
        # Still PyTorch's rounding, and the block still ours to free.
        second = xha.host_caching_allocator_alloc(1500)
        out["after_late"] = xha.host_memory_stats()["active_bytes.current"]
        xha.host_caching_allocator_delete(address)
        xha.host_caching_allocator_delete(second)
        try:
            xha.host_caching_allocator_delete(second)
        except ValueError as error:
            out["double"] = type(error).__name__
        try:
            xha.host_caching_allocator_delete(12345)
        except ValueError as error:
            out["unknown"] = type(error).__name__
        out["rounded"] = rounded
        out["active_end"] = xha.host_memory_stats()["active_requests.current"]
        print(json.dumps(out))
        """
    )
    got = last_json(result)
    for bad, key in (("pinned_bogus:1", "pinned_bogus"), ("pinned_fit:sideways", "sideways"), ("pinned_roundup_divisions:3", "3")):
        name, message, code = got[bad]
        assert name == "ConfigurationError" and code == "XPU_HOST_ERROR_INVALID_CONFIGURATION"
        # The library's message names the source and what was wrong.
        assert key in message and "xpu_host_configure" in message, message
    assert got["no_colon"][0] == "ConfigurationError"
    assert "str" in got["type"]
    assert got["rounded"] == 1024
    name, message, code, is_value_error = got["late"]
    assert name == "AlreadyInitializedError" and code == "XPU_HOST_ERROR_ALREADY_INITIALIZED" and not is_value_error
    assert message, "the library's message is carried"
    assert got["after_late"] == 1024 + 2048
    assert got["double"] == "InvalidArgumentError" and got["unknown"] == "InvalidArgumentError"
    assert got["active_end"] == 0


def test_environment_configuration_is_read_at_start():
    result = run_python(
        """
        import json, sys
        sys.modules["torch"] = None
        import xpu_caching_host_allocator as xha
        try:
            xha.init()
            print(json.dumps({"error": None}))
        except ValueError as error:
            print(json.dumps({"error": str(error)}))
        """,
        env={"XPU_CACHING_HOST_ALLOCATOR_CONF": "pinned_max_cached_size_mb:lots"},
    )
    error = last_json(result)["error"]
    assert error and "XPU_CACHING_HOST_ALLOCATOR_CONF" in error and "lots" in error
