"""`ArgumentError`s (`DataSourceError`, `OutputExistsError`): one message, spelled in keywords
(library) or flags (command line)."""

import pickle

import pytest

from bpsn_ext.data import lra_release
from bpsn_ext.util.cli_args import flag, flag_errors
from bpsn_ext.util.errors import DataSourceError, OutputExistsError


def test_message_spells_arguments_as_keywords_and_fills_values():
    err = DataSourceError(
        "task {task!r} needs {data:LRA_DIR} or {generate:True}; {data:X}", task="listops"
    )
    assert isinstance(err, ValueError)
    assert str(err) == "task 'listops' needs data=LRA_DIR or generate=True; data=X"
    assert err.arguments == ("data", "generate")
    assert err.spell(flag) == "task 'listops' needs --data LRA_DIR or --generate; --data X"
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.spell(flag) == err.spell(flag)


def test_flag_spelling():
    assert flag("data", "PATH") == "--data PATH"
    assert flag("generate", "True") == "--generate"
    assert flag("n_train") == "--n-train"


def test_flag_errors_turns_only_data_source_errors_into_exits():
    with pytest.raises(SystemExit) as info:
        with flag_errors("train lra"):
            raise DataSourceError("{hf:NAME} applies to {tasks}", tasks=("text",))
    assert str(info.value) == "train lra: --hf NAME applies to ('text',)"
    assert isinstance(info.value.__cause__, DataSourceError)
    with pytest.raises(ValueError, match="^plain$"):
        with flag_errors("train lra"):
            raise ValueError("plain")


@pytest.mark.parametrize(
    "task, sources, arguments, text",
    [
        (
            "image",
            {},
            ("data", "hf"),
            "task image needs data=CIFAR_DIR (python batches) or "
            "hf=NAME (e.g. uoft-cs/cifar10); nothing is downloaded",
        ),
        ("listops", {}, ("data", "generate"), "task listops needs data=LRA_DIR or generate=True"),
        (
            "pathfinder",
            {},
            ("data", "generate"),
            "task pathfinder needs data=LRA_DIR or generate=True",
        ),
        (
            "text",
            {"generate": True},
            ("generate",),
            "generate=True is for listops and pathfinder, not 'text'",
        ),
        (
            "pathfinder",
            {"data": "x", "generate": True},
            ("data", "hf", "generate"),
            "task 'pathfinder': pass one data source, data=PATH/hf=NAME or generate=True, not both",
        ),
        (
            "retrieval",
            {"hf": "x"},
            ("hf",),
            "hf=NAME applies to the tasks ('mnist', "
            "'fashion-mnist', 'text', 'image'), not 'retrieval'",
        ),
    ],
)
def test_load_task_names_its_keyword_arguments(task, sources, arguments, text):
    for call in (lra_release.check_sources, lra_release.load_task):
        with pytest.raises(DataSourceError) as info:
            call(task, **sources)
        assert str(info.value) == text and info.value.arguments == arguments


def test_output_exists_error_is_a_file_exists_error_spelled_by_the_command():
    err = OutputExistsError("{path} exists; pass {overwrite:True} or {resume:True}", path="o")
    assert isinstance(err, FileExistsError)
    assert str(err) == "o exists; pass overwrite=True or resume=True"
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is OutputExistsError and str(copy) == str(err)
    with pytest.raises(SystemExit, match="^generate x: o exists; pass --overwrite or --resume$"):
        with flag_errors("generate x"):
            raise err
