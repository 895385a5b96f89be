"""Every ``Examples`` section in the public package runs."""

import doctest
import importlib
import pkgutil

import pytest

import matalign


def _modules():
    names = ["matalign"]
    for info in pkgutil.walk_packages(matalign.__path__, prefix="matalign."):
        if info.name.startswith("matalign._core") or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs={}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"


def test_public_functions_have_examples():
    missing = []
    for name in matalign.__all__:
        obj = getattr(matalign, name)
        if callable(obj) and not isinstance(obj, type):
            doc = obj.__doc__ or ""
            if "Examples" not in doc or ">>>" not in doc:
                missing.append(name)
    assert not missing, f"public functions without a runnable Examples section: {missing}"
