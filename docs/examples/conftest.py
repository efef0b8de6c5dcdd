"""The example project's conftest.

pytest-sessionstate needs nothing here (it loads by its entry point). This file
is here so that the tests can ``import workflow_app``: pytest puts the directory
of a conftest.py that is not inside a package on ``sys.path`` (its default
``prepend`` import mode). A project of your own can set ``pythonpath = ["."]`` in
its pytest configuration instead, or install the app.
"""

# async_auto/ is a project of its own (pytest-asyncio in auto mode, its own
# pytest.ini): tests/test_example_async.py runs it in a pytest of its own.
collect_ignore = ["async_auto"]
