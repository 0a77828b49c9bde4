"""The terminal module: one rule for prompts without an answer, one table writer.

Every prompt that meets the end of its input, or no terminal, raises the error its caller
chose, at once: never a hang, never an empty answer taken as given.
"""

from __future__ import annotations

import io

import pytest

from cfakey.cli import terminal
from cfakey.cli.prompts import confirm_file_store, prompt_file_password
from cfakey.errors import CfakeyError, ExitCode, StoreUnavailableError, UsageError


class EndedError(CfakeyError):
    """The caller's own end-of-input error."""


def ended() -> EndedError:
    return EndedError("Plus rien à lire.")


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """A piped (non-terminal) standard input, filled by each test."""
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stdin", pipe)
    return pipe


def feed(pipe: io.StringIO, text: str) -> None:
    pipe.write(text)
    pipe.seek(0)


@pytest.mark.parametrize(
    "ask",
    [
        lambda: terminal.ask_line("Question : ", on_end=ended),
        lambda: terminal.ask_hidden("Mot de passe : ", on_end=ended),
        lambda: terminal.ask_secret("Clé : ", on_end=ended),
        lambda: terminal.ask_secret("Clé : ", on_end=ended, whole_input=True),
        lambda: terminal.ask_yes_no("D'accord ?", default=True, on_end=ended),
    ],
)
def test_every_prompt_raises_the_callers_error_at_end_of_input(
    stdin: io.StringIO, ask: object
) -> None:
    assert callable(ask)
    with pytest.raises(EndedError):
        ask()


def test_a_hidden_prompt_never_reads_a_pipe(stdin: io.StringIO) -> None:
    feed(stdin, "secret-dans-un-tube\n")
    with pytest.raises(EndedError):
        terminal.ask_hidden("Mot de passe : ", on_end=ended)
    assert stdin.read() == "secret-dans-un-tube\n"  # left unread


def test_piped_answers_are_read(stdin: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    feed(stdin, "oui\n\nune-cle\r\nsuite\n")
    assert terminal.ask_yes_no("D'accord ?", default=False, on_end=ended) is True
    assert terminal.ask_yes_no("Encore ?", default=True, on_end=ended) is True
    assert terminal.ask_secret("Clé : ", on_end=ended) == "une-cle\r\n"
    assert terminal.ask_secret("Reste : ", on_end=ended, whole_input=True) == "suite\n"
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "D'accord ? [o/N]" in captured.err
    assert "Encore ? [O/n]" in captured.err


def test_a_script_is_told_which_option_replaces_a_question(stdin: io.StringIO) -> None:
    dialogue = terminal.Dialogue(None)
    assert not dialogue.interactive
    with pytest.raises(UsageError) as caught:
        dialogue.ask("Durée de vie : ", needed="--lifetime-months N")
    assert caught.value.message == "Pas de terminal pour demander : Durée de vie."
    assert caught.value.hint == "En mode script, indiquez --lifetime-months N."
    assert caught.value.exit_code == ExitCode.USAGE
    assert terminal.Dialogue(None, assume_yes=True).confirm("Supprimer ?") is True


def test_a_forced_dialogue_at_end_of_input_says_nothing_was_saved(stdin: io.StringIO) -> None:
    dialogue = terminal.Dialogue(True)
    with pytest.raises(UsageError) as caught:
        dialogue.ask("Date d'expiration : ", needed="--expires")
    assert caught.value.message == (
        "Pas de terminal ni d'entrée standard pour répondre (Date d'expiration) : "
        "rien n'a été enregistré."
    )


def test_the_file_password_is_never_read_from_a_pipe(stdin: io.StringIO) -> None:
    feed(stdin, "mot-de-passe\n")
    for new in (False, True):
        with pytest.raises(StoreUnavailableError, match="aucun terminal"):
            prompt_file_password(new=new)
    assert confirm_file_store("le trousseau ne répond pas") is False


def test_one_table_writer_aligns_wraps_and_paints_only_a_terminal() -> None:
    rows = [("CFA du Littoral", "9"), ("CFA des Métiers du bâtiment", "120")]
    assert terminal.text_table(
        ("CFA", "Jours"), rows, rule=False, fit=False, right=frozenset({1}), colours=["31", "32"]
    ) == [
        "CFA                          Jours",
        "CFA du Littoral                  9",
        "CFA des Métiers du bâtiment    120",
    ]
    assert terminal.text_table(("CFA", "Jours"), rows, width=22) == [
        "CFA              Jours",
        "───────────────  ─────",
        "CFA du Littoral  9",
        "CFA des Métiers  120",
        "du bâtiment",
    ]
