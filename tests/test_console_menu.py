"""Profile menu and command line: selection, inline validation errors, one key starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Label, Switch

from pirl_console.__main__ import UsageError, main, parse
from pirl_console.app import PirlConsole
from pirl_console.run_request import RunRequest
from pirl_console.screens.menu import MenuScreen
from pirl_console.screens.run import RunScreen
from pirl_console.widgets.overrides_form import OverridesForm
from pirl_console.widgets.profile_table import ProfileTable
from pirl_core.launch import child_commands
from tests.console_helpers import ROOT, SIZE, descendants, fast_settings, wait_for
from tools.screenshots.fake_child import FakeCommands


def menu_app(**kwargs) -> PirlConsole:
    commands = FakeCommands(
        learner_flags=["--updates", "1", "--hold"], actor_flags=["--updates", "1", "--hold"], cwd=str(ROOT)
    )
    return PirlConsole(commands=commands, settings=fast_settings(), **kwargs)


def learner_argv(request: RunRequest) -> tuple[str, ...]:
    """The learner's flags (after ``python -m pirl_core.learner``) for this request."""
    return child_commands(request.cli_args(request.config()))[0].argv[3:]


def error_text(app: PirlConsole, wid: str) -> str:
    label = app.screen.query_one(f"#{wid}-error", Label)
    return str(label.render()) if label.has_class("-visible") else ""


async def type_into(pilot, app: PirlConsole, wid: str, text: str, keys: bool = False) -> None:
    """Put text in a field: real key presses, or (faster) the value the keys would produce."""
    box = app.screen.query_one(f"#{wid}", Input)
    box.focus()
    box.value = ""
    if keys:
        await pilot.press(*text)
    else:
        box.value = text
    form = app.screen.query_one(OverridesForm)
    await wait_for(pilot, lambda: app.screen.last_values == form.values(), what="the form revalidated")


async def set_switch(pilot, app: PirlConsole, value: bool) -> None:
    app.screen.query_one("#ov-resume", Switch).value = value
    form = app.screen.query_one(OverridesForm)
    await wait_for(pilot, lambda: app.screen.last_values == form.values(), what="the form revalidated")


async def test_smoke_preselected_and_enter_starts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the run dir is relative: keep it out of the checkout
    app = menu_app()
    async with app.run_test(size=SIZE) as pilot:
        menu = app.screen
        assert isinstance(menu, MenuScreen)
        table = menu.query_one(ProfileTable)
        assert table.selected_name == "smoke" and app.focused is table
        assert set(table.rows_by_name) >= {"smoke", "bench", "toy"}
        assert menu.validation.ok
        # a fresh run dir under the profile's output dir, named in the exact command
        out = menu.request.override("output_dir")
        assert out is not None and out.startswith("outputs/smoke/")
        await pilot.press("enter")
        await pilot.pause(0.2)
        run = app.screen
        assert isinstance(run, RunScreen)
        assert run.config.profile == "smoke" and run.config.output_dir.startswith("outputs/smoke/")
        await wait_for(pilot, lambda: run.actors[0].alive, what="actor started")
        assert run.learner.alive
        await run.stop_all()
    assert not descendants()


async def test_switching_profile_updates_form_and_commands(tmp_path: Path) -> None:
    app = PirlConsole()  # the real headless commands (nothing is started here)
    async with app.run_test(size=SIZE) as pilot:
        menu = app.screen
        await pilot.press("down")  # smoke -> toy (alphabetical: bench, smoke, toy)
        await pilot.pause(0.05)
        assert menu.profile == "toy"
        assert menu.query_one("#ov-suite", Input).placeholder.startswith("point_reach")
        commands = str(menu.query_one("#menu-commands").render())
        assert "-m pirl_core.learner --profile toy --output_dir=outputs/toy/" in commands
        assert "-m pirl_core.actor --profile toy --actor-id 0 --output_dir=outputs/toy/" in commands


async def test_invalid_values_are_shown_inline_and_nothing_starts(tmp_path: Path) -> None:
    app = menu_app()
    async with app.run_test(size=SIZE) as pilot:
        menu = app.screen
        await type_into(pilot, app, "ov-suite", "libero_nope", keys=True)
        assert "env.suite: got 'libero_nope', expected one of" in error_text(app, "ov-suite")
        assert menu.query_one("#ov-suite", Input).has_class("-invalid")
        await type_into(pilot, app, "ov-task-ids", "3,12")
        assert "task ids in [0, 9]" in error_text(app, "ov-task-ids")
        await type_into(pilot, app, "ov-updates", "0")
        assert "learner.updates: got 0, expected >= 1" in error_text(app, "ov-updates")
        await type_into(pilot, app, "ov-extra", "recipe.clip=2 nonsense")
        assert "expected KEY=VALUE" in error_text(app, "ov-extra")
        assert "recipe.clip: got 2.0, expected in (0, 1)" in error_text(app, "ov-extra")
        assert menu.query_one("#menu-start", Button).disabled
        assert "fix 5 problems" in str(menu.query_one("#menu-status").render())

        menu.query_one("#profile-table").focus()
        await pilot.press("s")
        await pilot.pause(0.1)
        assert app.screen is menu, "nothing starts while the request is invalid"
        assert not descendants()

        # fixing the values clears the messages one by one
        await type_into(pilot, app, "ov-suite", "libero_spatial")
        assert error_text(app, "ov-suite") == ""
        await type_into(pilot, app, "ov-task-ids", "1 2")
        await type_into(pilot, app, "ov-updates", "3")
        await type_into(pilot, app, "ov-extra", "recipe.clip=0.1")
        assert menu.validation.ok, menu.validation.errors
        assert menu.request.override("env.task_ids") == "[1, 2]"
        args = learner_argv(menu.request)
        for flag in (
            "--env.suite=libero_spatial",
            "--env.task_ids=[1, 2]",
            "--learner.updates=3",
            "--recipe.clip=0.1",
        ):
            assert flag in args
        assert not menu.query_one("#menu-start", Button).disabled


async def test_cross_field_and_resume_errors(tmp_path: Path) -> None:
    app = menu_app()
    async with app.run_test(size=SIZE) as pilot:
        menu = app.screen
        await type_into(pilot, app, "ov-extra", "policy.chunk_size=2")
        assert "policy.chunk_size" in error_text(app, "ov-extra") or "action_steps" in error_text(
            app, "ov-extra"
        )
        await type_into(pilot, app, "ov-extra", "")
        # resume with nothing to resume
        await type_into(pilot, app, "ov-output-dir", str(tmp_path / "empty"))
        await set_switch(pilot, app, True)
        assert "no checkpoint at" in error_text(app, "ov-resume")
        # a new run into a dir that holds checkpoints is refused by the learner: said up front
        used = tmp_path / "used"
        (used / "checkpoints" / "000001").mkdir(parents=True)
        await set_switch(pilot, app, False)
        await type_into(pilot, app, "ov-output-dir", str(used))
        assert "already holds checkpoints" in error_text(app, "ov-output-dir")
        assert not menu.validation.ok


async def test_invalid_profile_file_is_listed_with_its_error(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "good.toml").write_text((ROOT / "profiles" / "toy.toml").read_text())
    (profiles / "broken.toml").write_text('[env]\nsuite = "nowhere"\ntype = "toy"\n')
    app = menu_app(profiles_dir=profiles)
    async with app.run_test(size=SIZE) as pilot:
        menu = app.screen
        table = menu.query_one(ProfileTable)
        assert table.rows_by_name["broken"].config is None
        assert "env.suite" in (table.rows_by_name["broken"].error or "")
        # smoke is not in this dir: the first profile is selected instead
        assert menu.profile == "broken" and not menu.validation.ok
        assert "env.suite" in error_text(app, "ov-general")
        await pilot.press("down")
        await pilot.pause(0.05)
        assert menu.profile == "good" and menu.validation.ok
        # the child resolves exactly this profile file
        assert learner_argv(menu.request)[:2] == ("--profile", str(profiles / "good.toml"))


async def test_profile_flag_skips_the_menu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    launch = parse(["--profile", "toy", "--learner.updates=3", "--no-start"])
    assert launch.skip_menu and not launch.autostart
    assert launch.request is not None and launch.request.override("learner.updates") == "3"
    app = menu_app(request=launch.request, skip_menu=True, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        run = app.screen
        assert isinstance(run, RunScreen) and run.config.learner.updates == 3
        assert not run.any_alive()
        await pilot.press("escape")  # back to the menu, prefilled with the same request
        await pilot.pause(0.1)
        assert isinstance(app.screen, MenuScreen) and app.screen.profile == "toy"
        assert app.screen.query_one("#ov-updates", Input).value == "3"


def test_command_line_parsing(tmp_path: Path) -> None:
    assert parse([]).request is None and not parse([]).skip_menu
    bench = parse(["--profile", "bench"])
    assert bench.skip_menu and bench.autostart and bench.request is not None
    assert (bench.request.override("output_dir") or "").startswith("outputs/bench/")
    ckpt = tmp_path / "run" / "checkpoints" / "000002"
    ckpt.mkdir(parents=True)
    resume = parse(["--profile", "smoke", "--resume-from", str(ckpt), f"--output_dir={tmp_path / 'run'}"])
    assert resume.request is not None and learner_argv(resume.request)[2:4] == ("--resume-from", str(ckpt))
    with pytest.raises(UsageError, match="no checkpoint at"):
        parse(["--profile", "smoke", "--resume-from", str(tmp_path / "missing")])
    prefill = parse(["--learner.updates=4"])
    assert not prefill.skip_menu and prefill.request is not None
    with pytest.raises(UsageError, match="env.suite"):
        parse(["--profile", "smoke", "--env.suite=nowhere"])
    with pytest.raises(UsageError, match="unrecognised argument"):
        parse(["--profile", "smoke", "stray"])


def test_bad_profile_exits_2_before_the_ui(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "no_such_profile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_profile" in err
    assert os.environ.get("MUJOCO_GL")


async def test_the_form_offers_every_documented_field() -> None:
    """The override form's fields and their documentation come from the config declarations (what
    --help lists too): a tooltip on the common fields, completion and a doc line in 'more'."""
    from pirl_console.widgets.overrides_form import FIELDS, SPECS, FieldSuggester, field_doc
    from pirl_core.config import field_specs

    specs = {s.name: s for s in field_specs()}
    assert set(FIELDS) <= set(specs) and set(SPECS) == set(specs)
    suggester = FieldSuggester()
    assert (
        await suggester.get_suggestion("recipe.clip=0.1 --recipe.noi") == "recipe.clip=0.1 --recipe.noise_lr="
    )
    assert await suggester.get_suggestion("recipe.clip=0.") is None
    app = menu_app()
    async with app.run_test(size=SIZE) as pilot:
        form = app.screen.query_one(OverridesForm)
        assert form.query_one("#ov-suite", Input).tooltip == field_doc("env.suite")
        assert specs["env.suite"].doc in field_doc("env.suite")
        doc = form.query_one("#ov-extra-doc", Label)
        assert not doc.has_class("-visible")
        await type_into(pilot, app, "ov-extra", "recipe.noi", keys=True)
        await pilot.press("right")  # accept the completion
        await pilot.pause(0.05)
        assert form.query_one("#ov-extra", Input).value == "recipe.noise_lr="
        assert doc.has_class("-visible") and specs["recipe.noise_lr"].doc in str(doc.render())
        await type_into(pilot, app, "ov-extra", "recipe.clip=0.1 recipe.")  # many fields match
        await pilot.pause(0.05)
        assert not doc.has_class("-visible")
