"""`user_errors`: how a command's exceptions reach the user."""

from __future__ import annotations

import pytest

from uee.streams.cli import Terminated, user_errors


def test_a_sigterm_wrapped_by_cpython_in_a_system_error_is_a_clean_stop(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGTERM handler's `Terminated` raised while C code runs comes out as a SystemError
    caused by it (seen in CI: "<method 'items' of 'dict' objects> returned a result with an
    exception set", reported as an internal error, exit 1). It is the stop asked for."""
    @user_errors
    def command() -> None:
        try:
            raise Terminated
        except Terminated as stop:
            raise SystemError("<method 'items' of 'dict' objects> returned a result with "
                              "an exception set") from stop

    with pytest.raises(SystemExit) as exited:
        command()
    assert exited.value.code == 0
    assert "stopped (SIGTERM) before it had started" in capsys.readouterr().err


def test_a_ctrl_c_wrapped_by_cpython_in_a_system_error_is_an_interruption(
        capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise SystemError("<built-in method poll> returned a result with an exception "
                              "set") from stop

    with pytest.raises(SystemExit) as exited:
        command()
    assert exited.value.code == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_any_other_exception_is_an_internal_error(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UEE_DEBUG", raising=False)

    @user_errors
    def command() -> None:
        raise SystemError("something else")

    with pytest.raises(SystemExit) as exited:
        command()
    assert exited.value.code == 1
    assert "error[INTERNAL]: SystemError: something else" in capsys.readouterr().err
