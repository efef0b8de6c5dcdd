"""The example project's conftest: pytest-sessionstate is loaded by its entry point."""
