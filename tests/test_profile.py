"""Workload profiles and the spec that names one: a spec is parsed once into a value that gives its canonical text
back, scales by multiplying, and loads the profile with exactly its work scaled; bad specs and bad profile files are
one line naming what is allowed."""

from __future__ import annotations

import pytest

from foundation.config import ConfigError, ConfigModel, parse
from services.campaign.profile import ProfileError, ProfileSpec, available_profiles
from services.campaign.settings import SettingError, Settings
from tests.conftest import QUICK_PROFILE

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("text", ["default", "default*1.3", "default*wait=2", "default*cpu=0.5",
                                  "default*1.3*wait=2*cpu=0.5", "flaky*0.25", "default*1e-05"])
def test_a_spec_gives_its_text_back_and_reads_back_as_itself(text):
    spec = ProfileSpec.parse(text)
    assert str(spec) == text
    assert ProfileSpec.parse(str(spec)) == spec


def test_a_path_spec_keeps_its_path(tmp_path):
    path = tmp_path / "quick.toml"
    path.write_text(QUICK_PROFILE)
    spec = ProfileSpec.parse(f"{path}*wait=3")
    assert spec.name == str(path) and spec.wait_scale == 3 and str(spec) == f"{path}*wait=3"
    assert spec.load().name == "quick*wait=3"


@pytest.mark.parametrize(("text", "canonical"), [
    ("default*cpu=0.5*wait=2", "default*wait=2*cpu=0.5"),  # all the work, then waits, then CPU
    ("default*wait=2*wait=3", "default*wait=6"),  # repeated scales multiply
    ("default*1*wait=1.0", "default"),  # a scale of 1 is no scale
    ("default*2.50", "default*2.5"),
])
def test_equivalent_specs_share_one_text(text, canonical):
    assert str(ProfileSpec.parse(text)) == canonical


def test_a_sweep_scales_the_spec_it_is_given():
    spec = ProfileSpec.parse("default*1.3")
    assert spec.scaled(wait=2) == ProfileSpec.parse("default*1.3*wait=2")
    assert str(spec.scaled(wait=2).scaled(wait=2)) == "default*1.3*wait=4"
    assert str(spec.scaled(cpu=0.5)) == "default*1.3*cpu=0.5"
    assert str(ProfileSpec().scaled(2)) == "default*2"
    assert spec == ProfileSpec.parse("default*1.3"), "a spec does not change"


def test_waits_or_cpu_scale_alone_and_failures_never():
    base = ProfileSpec().load()
    both = ProfileSpec.parse("default*wait=2*cpu=3").load()
    assert both.generation.wait_median_ms == 2 * base.generation.wait_median_ms
    assert both.automation.wait_p99_ms == 2 * base.automation.wait_p99_ms
    assert both.automation.cpu_ms == 3 * base.automation.cpu_ms
    assert both.generation.failure_probability == base.generation.failure_probability
    assert both.generation.wait_sigma == pytest.approx(base.generation.wait_sigma)  # the spread's shape is kept
    assert both.name == "default*wait=2*cpu=3" and base.name == "default"
    everything = ProfileSpec.parse("default*1.3").load()
    assert everything.generation.cpu_ms == pytest.approx(1.3 * base.generation.cpu_ms)
    assert everything.generation.wait_median_ms == pytest.approx(1.3 * base.generation.wait_median_ms)


@pytest.mark.parametrize(("text", "says"), [
    ("default*speed=2", "profile spec 'default*speed=2': scale '*speed=2' is not allowed; allowed: '*N' (all the work"),
    ("default*wait=0", "scale '*wait=0' is not allowed; allowed: '*N'"),
    ("default*wait=x", "scale '*wait=x' is not allowed"),
    ("default*inf", "scale '*inf' is not allowed"),
    ("*2", "profile spec '*2': it names no profile; allowed: a profile name (default, flaky"),
    ("nonexistent", "workload profile 'nonexistent' not found; allowed: one of default, flaky, none, slow-provider or "
                    "a path to a .toml file"),
])
def test_a_bad_spec_is_one_line_saying_what_is_allowed(text, says):
    with pytest.raises(ProfileError) as caught:
        ProfileSpec.parse(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_spec_refuses_a_scale_that_is_no_positive_number():
    with pytest.raises(ProfileError, match="scale 0 is not allowed"):
        ProfileSpec("default", wait_scale=0)
    with pytest.raises(ProfileError, match="is not allowed"):
        ProfileSpec.parse("default").scaled(cpu=-1)


@pytest.mark.parametrize(("text", "line"), [
    (QUICK_PROFILE.replace("[automation]", "speed = 2\n[automation]"),
     "unknown key 'generation.speed'; allowed: cpu_ms, failure_probability, wait_median_ms, wait_p99_ms"),
    (QUICK_PROFILE.replace("seed = 3", 'seed = "3"'), "key 'seed' has value '3'; allowed: a whole number"),
    (QUICK_PROFILE.replace("failure_probability = 0.0", "failure_probability = 1.5", 1),
     "key 'generation.failure_probability' has value 1.5; allowed: a probability from 0 to 1"),
    (QUICK_PROFILE.replace("wait_p99_ms = 20.0", "wait_p99_ms = 2.0"),
     "key 'generation.wait_p99_ms' has value 2.0; allowed: milliseconds >= wait_median_ms (5)"),
    (QUICK_PROFILE.replace("[automation]", "[automation"), "not valid TOML: "),
])
def test_a_bad_profile_file_is_one_line_naming_key_value_and_what_is_allowed(tmp_path, text, line):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    spec = ProfileSpec.parse(str(path))  # the spec is good: the file is read when the profile is loaded
    with pytest.raises(ProfileError) as caught:
        spec.load()
    assert str(caught.value).startswith(f"{path}: {line}") and "\n" not in str(caught.value)


def test_a_profile_without_a_name_is_named_after_its_file(tmp_path):
    path = tmp_path / "nameless.toml"
    path.write_text(QUICK_PROFILE.replace('name = "quick"\n', ""))
    assert ProfileSpec.parse(str(path)).load().name == "nameless"


def test_every_shipped_profile_loads():
    assert {"default", "flaky", "none", "slow-provider"} <= set(available_profiles())
    for name in available_profiles():
        assert ProfileSpec.parse(name).load().name == name


class _WithProfile(ConfigModel):
    profile: ProfileSpec = ProfileSpec()


def test_a_spec_is_a_key_of_a_configuration_file():
    assert parse({}, _WithProfile, "f.toml").profile == ProfileSpec()
    assert parse({"profile": "default*wait=2"}, _WithProfile, "f.toml").profile == ProfileSpec(wait_scale=2)
    assert parse({"profile": "flaky"}, _WithProfile, "f.toml").model_dump(mode="json") == {"profile": "flaky"}
    with pytest.raises(ConfigError) as caught:
        parse({"profile": "defualt"}, _WithProfile, "f.toml")
    assert str(caught.value) == ("f.toml: key 'profile' has value 'defualt'; allowed: one of default, flaky, none, "
                                 "slow-provider or a path to a .toml file")


def test_a_service_reads_the_spec_from_its_environment():
    assert Settings.from_env({"OFFPATH_PROFILE": "default*cpu=2"}).profile_spec == ProfileSpec(cpu_scale=2)
    assert Settings.from_env({}).profile().name == "default"
    with pytest.raises(SettingError, match="environment variable OFFPATH_PROFILE: profile spec 'default\\*x'"):
        Settings.from_env({"OFFPATH_PROFILE": "default*x"})
