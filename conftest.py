"""Top-level conftest: the plugin is tested the pytest way, with pytester."""

pytest_plugins = ["pytester"]
