"""The example project's conftest.

pytest-sessionstate needs nothing here (it loads by its entry point). This file
is here so that the tests can ``import workflow_app``: pytest puts the directory
of a conftest.py that is not inside a package on ``sys.path`` (its default
``prepend`` import mode). A project of your own can set ``pythonpath = ["."]`` in
its pytest configuration instead, or install the app.
"""
