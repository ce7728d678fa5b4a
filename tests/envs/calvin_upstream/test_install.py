"""Finding upstream calvin_env and reporting what is wrong with it (runs without calvin_env)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import subprocess
from pathlib import Path

import pytest

from vlaeval.cli import main
from vlaeval.envs.calvin_upstream import install
from vlaeval.envs.calvin_upstream.install import HEAD_REVISION, REVISION_FILE, installation, read_revision, revision_kind
from vlaeval.errors import VlaevalError


@pytest.fixture(autouse=True)
def _fresh_lookup():
    """Every test finds calvin_env anew (the lookup and the warning are cached per process)."""
    installation.cache_clear()
    install._warn_once.cache_clear()
    yield
    installation.cache_clear()
    install._warn_once.cache_clear()


def _pretend_installed(monkeypatch: pytest.MonkeyPatch, root: Path | None) -> None:
    """calvin_env at ``root`` (None: not installed), with every module its env imports present."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object):
        if name == "calvin_env":
            if root is None:
                return None
            return _package_spec(root)
        if name in install.RUNTIME_MODULES:
            return importlib.machinery.ModuleSpec(name, None)
        return real(name, *args)

    monkeypatch.setattr(install.importlib.util, "find_spec", find_spec)


def _package_spec(root: Path) -> importlib.machinery.ModuleSpec:
    spec = importlib.machinery.ModuleSpec("calvin_env", None, is_package=True)
    spec.submodule_search_locations = [str(root / "calvin_env")]
    return spec


def _source_tree(tmp_path: Path, revision: str | None, data: bool = True) -> Path:
    root = tmp_path / "calvin_env_src"
    for folder in ("calvin_env", "conf", *(("data",) if data else ())):
        (root / folder).mkdir(parents=True)
    if revision is not None:
        (root / REVISION_FILE).write_text(revision + "\n")
    return root


def test_listed_without_calvin_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _pretend_installed(monkeypatch, None)
    main(["suites"])
    listing = capsys.readouterr().out
    assert "calvin-upstream" in listing and "needs calvin_env (see README)" in listing


def test_run_without_calvin_env_is_one_line_error_saying_how_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _pretend_installed(monkeypatch, None)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--agent", "expert", "--suite", "calvin-upstream", "--episodes", "1", "--out", str(tmp_path), "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "calvin_env, which is not installed" in err and "scripts/install-calvin-upstream.sh" in err
    assert list(tmp_path.iterdir()) == []  # no run directory


def test_missing_asset_folder_is_one_line_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = _source_tree(tmp_path, HEAD_REVISION, data=False)
    _pretend_installed(monkeypatch, root)
    with pytest.raises(VlaevalError) as error:
        installation()
    message = str(error.value)
    assert f"data folder {root / 'data'} does not exist" in message and "\n" not in message


def test_missing_dependency_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _pretend_installed(monkeypatch, _source_tree(tmp_path, HEAD_REVISION))
    fake = install.importlib.util.find_spec
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name, *a: None if name == "quaternion" else fake(name, *a))
    with pytest.raises(VlaevalError, match="its dependencies quaternion are not"):
        installation()


def test_the_validated_revision_is_quiet_and_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    root = _source_tree(tmp_path, HEAD_REVISION[:7])
    _pretend_installed(monkeypatch, root)
    with caplog.at_level(logging.WARNING, logger="vlaeval"):
        found = install.check()
    assert (found.root, found.revision, found.kind) == (root.resolve(), HEAD_REVISION[:7], "HEAD")
    assert found.versions() == {"calvin_env": HEAD_REVISION[:7], "calvin_env_revision": "HEAD"}
    assert caplog.records == []


def test_another_revision_warns_once_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    from vlaeval.envs.calvin_upstream.suite import CalvinUpstreamSuite

    _pretend_installed(monkeypatch, _source_tree(tmp_path, "1431a46"))
    suite = CalvinUpstreamSuite()
    with caplog.at_level(logging.WARNING, logger="vlaeval"):
        assert len(suite.episodes("D->D", 0)) == 1000
        suite.episodes("ABC->D", 0)
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith("warning: ") and "\n" not in message
    assert "revision 1431a46" in message and "submodule pin" in message and "797142c" in message
    assert suite.versions() == {"calvin_env": "1431a46", "calvin_env_revision": "submodule pin"}


def test_revision_kinds() -> None:
    assert revision_kind(HEAD_REVISION) == revision_kind("797142c") == "HEAD"
    assert revision_kind("1431a46") == revision_kind("1431a46" + "0" * 33) == "submodule pin"
    assert revision_kind("0123456789") == revision_kind("unknown") == revision_kind("") == "other"


def test_revision_of_a_checkout_comes_from_git_not_from_an_enclosing_repository(tmp_path: Path) -> None:
    def git(cwd: Path, *args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                              capture_output=True, text=True).stdout.strip()

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git(checkout, "init", "-q")
    (checkout / "setup.py").write_text("")
    git(checkout, "add", ".")
    git(checkout, "commit", "-q", "-m", "x")
    assert read_revision(checkout) == git(checkout, "rev-parse", "HEAD")
    inside = checkout / "vendor" / "calvin_env-797142c"  # an unpacked tarball in some project's repository
    inside.mkdir(parents=True)
    assert read_revision(inside) != git(checkout, "rev-parse", "HEAD")
    (inside / REVISION_FILE).write_text("797142c\n")
    assert read_revision(inside) == "797142c"
