"""A pytest plugin for course authors: test activity notebooks against a stand-in Timeback.

In the ``conftest.py`` of your tests (with ``pip install 'timeback-jupyter[testing]'``)::

    pytest_plugins = ["timeback_jupyter.pytest_plugin"]

and then::

    async def test_quiz_completes(timeback_notebook):
        record = await timeback_notebook("../notebooks/quiz.ipynb")
        record.assert_completed(correct=3, total=3)

Fixtures: ``timeback_notebook`` (run a notebook, get a
:class:`~timeback_jupyter.testing.NotebookRecord`), ``timeback_standin`` (the stand-in
Timeback), ``timeback_app_config`` (your timeback.config.json), ``timeback_config``
(``c.Timeback`` of the test server) and pytest-jupyter's server fixtures (``jp_serverapp``,
``jp_fetch``, ``jp_root_dir``...) with the extension enabled.
"""

from importlib.util import find_spec

_MISSING = [name for name in ("pytest", "pytest_jupyter") if find_spec(name) is None]
if _MISSING:
    raise ImportError(
        "timeback_jupyter.pytest_plugin needs the 'testing' extra "
        f"(missing: {', '.join(_MISSING)}): pip install 'timeback-jupyter[testing]'"
    )

# pytest-jupyter first: the fixtures registered after it (ours) override its jp_server_config.
pytest_plugins = ["pytest_jupyter.jupyter_server", "timeback_jupyter.testing.fixtures"]
