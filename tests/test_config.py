"""The one way offpath reads configuration: every refusal is one line naming the file, the key, the value and what is
allowed, whatever the format."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import Field

from foundation.config import ConfigError, ConfigModel, distinct, load_toml, one_of, parse

pytestmark = pytest.mark.fast


class Layout(ConfigModel):
    workers: int = Field(1, ge=1)
    rate_per_s: float = Field(1.0, gt=0)
    poll: Literal["interval", "wait"] = "interval"


class Kill(ConfigModel):
    kind: Literal["kill-worker"]
    kills: int = Field(1, ge=1)


class Pause(ConfigModel):
    kind: Literal["pause-redis"]
    for_s: float = Field(gt=0, description="seconds > 0")


class Experiment(ConfigModel):
    name: str
    layout: Layout = Layout()
    faults: list[Annotated[Kill | Pause, Field(discriminator="kind")]] = []


@pytest.mark.parametrize(("data", "line"), [
    ({"name": "x", "layout": {"workers": 0}}, "f.toml: key 'layout.workers' has value 0; allowed: a whole number >= 1"),
    ({"name": "x", "layout": {"workers": True}}, "f.toml: key 'layout.workers' has value True; allowed: a whole number"),
    ({"name": "x", "layout": {"rate_per_s": "3"}}, "f.toml: key 'layout.rate_per_s' has value '3'; allowed: a number"),
    ({"name": "x", "layout": {"wrokers": 2}},
     "f.toml: unknown key 'layout.wrokers'; allowed: poll, rate_per_s, workers"),
    ({"layout": {}}, "f.toml: missing key 'name' (a string)"),
    ({"name": "x", "layout": {"poll": "never"}},
     "f.toml: key 'layout.poll' has value 'never'; allowed: one of interval, wait"),
    ({"name": "x", "faults": [{"kind": "pause-redis", "for_s": 0}]},
     "f.toml: key 'faults[0].for_s' has value 0; allowed: seconds > 0"),
    ({"name": "x", "faults": [{"kind": "melt"}]},
     "f.toml: key 'faults[0].kind' has value 'melt'; allowed: one of kill-worker, pause-redis"),
    ({"name": "x", "faults": [{"kind": "kill-worker", "for_s": 1}]},
     "f.toml: unknown key 'faults[0].for_s'; allowed: kills, kind"),
])
def test_a_refusal_is_one_line_naming_key_value_and_what_is_allowed(data, line):
    with pytest.raises(ConfigError) as caught:
        parse(data, Experiment, "f.toml")
    assert str(caught.value) == line


def test_a_whole_number_is_a_number():
    assert parse({"name": "x", "layout": {"rate_per_s": 3}}, Experiment, "f.toml").layout.rate_per_s == 3.0


def test_a_toml_syntax_error_names_the_file_and_the_place(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nlayout = {workers = }\n')
    with pytest.raises(ConfigError) as caught:
        load_toml(path, Experiment)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid TOML: ") and "line 2" in message and "\n" not in message


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read it"):
        load_toml(tmp_path / "absent.toml", Experiment)


class Rule(ConfigModel):
    name: Annotated[str, distinct("rule names", "a name no other rule has")]
    endpoint: Annotated[str, one_of(("POST_campaigns", "completion"), "the endpoints a run records")] = "completion"


class Rules(ConfigModel):
    rules: list[Rule]


def test_names_known_at_run_time_and_names_no_two_entries_share():
    assert [r.name for r in parse({"rules": [{"name": "a"}, {"name": "b"}]}, Rules, "r.toml").rules] == ["a", "b"]
    with pytest.raises(ConfigError) as caught:
        parse({"rules": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}, Rules, "r.toml")
    assert str(caught.value) == "r.toml: key 'rules[2].name' has value 'a'; allowed: a name no other rule has"
    with pytest.raises(ConfigError) as caught:
        parse({"rules": [{"name": "a", "endpoint": "GET"}]}, Rules, "r.toml")
    assert str(caught.value) == ("r.toml: key 'rules[0].endpoint' has value 'GET'; allowed: one of POST_campaigns, "
                                 "completion (the endpoints a run records)")
    assert parse({"rules": [{"name": "a"}]}, Rules, "again.toml").rules[0].name == "a", "each file is its own"


class RulesError(ConfigError):
    pass


def test_a_format_raises_its_own_kind_of_error_in_the_one_wording(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("rules = [{name = 1}]\n")
    with pytest.raises(RulesError, match=r"rules.toml: key 'rules\[0\].name' has value 1; allowed: a string"):
        load_toml(path, Rules, error=RulesError)
    path.write_text("rules = [\n")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_toml(path, Rules, error=RulesError)
