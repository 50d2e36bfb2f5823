"""`user_errors`: how a command's exceptions reach the user."""

from __future__ import annotations

import pytest

from uee.streams.cli import Terminated, user_errors


@pytest.mark.parametrize(("stop", "code", "said"), [
    (Terminated, 0, "stopped (SIGTERM) before it had started"),
    (KeyboardInterrupt, 130, "interrupted"),
], ids=["sigterm", "ctrl-c"])
def test_a_stop_wrapped_by_cpython_in_a_system_error_is_the_stop_asked_for(
        stop: type[BaseException], code: int, said: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A signal handler's exception raised while C code runs comes out as a SystemError
    caused by it (seen in CI under SIGTERM: "<method 'items' of 'dict' objects> returned a
    result with an exception set", reported as an internal error, exit 1)."""
    @user_errors
    def command() -> None:
        try:
            raise stop
        except stop as signalled:
            raise SystemError("<method 'items' of 'dict' objects> returned a result with "
                              "an exception set") from signalled

    with pytest.raises(SystemExit) as exited:
        command()
    assert exited.value.code == code
    assert capsys.readouterr().err.strip() == said


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
