"""Topic specs (stream.contracts.topics) and settings from the environment (stream.settings)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from stream.contracts.topics import (
    CATALOG,
    COMMANDS,
    ERASE_WITHIN_A_DAY,
    EVENTS,
    MODEL_SNAPSHOTS,
    RECOMMENDATIONS,
    TOPICS_DIR,
    load_schema,
    load_specs,
)
from stream.processing.refresh import Refresher
from stream.settings import VARIABLES, Settings, SettingsError

INPUT_TOPICS = (EVENTS, CATALOG, COMMANDS)
VIEWER_KEYED = {EVENTS, COMMANDS, RECOMMENDATIONS}

# --- topic specs ------------------------------------------------------------------------------


def test_every_spec_file_is_loaded_under_its_name() -> None:
    names = {json.loads(path.read_text())["name"] for path in TOPICS_DIR.glob("*.json")}
    specs = load_specs(Settings())
    assert set(specs) == names, f"expected the specs {sorted(names)}; got {sorted(specs)}"
    assert all(name == spec.name for name, spec in specs.items())


def test_every_spec_names_an_existing_schema_file_that_loads() -> None:
    for spec in load_specs(Settings()).values():
        path = TOPICS_DIR / spec.value_schema
        assert path.is_file(), f"{spec.name}: expected its value schema at {path}; there is no such file"
        schema = load_schema(spec.value_schema)
        assert schema.get("type") == "object", f"{spec.name}: expected an object schema; got {schema.get('type')!r}"


@pytest.mark.parametrize("partitions", [1, 5, 13])
def test_viewer_keyed_topics_take_the_configured_partition_count(partitions: int) -> None:
    specs = load_specs(Settings(partitions=partitions))
    keyed_by_viewer = {name for name, spec in specs.items() if spec.key == "user_id"}
    assert keyed_by_viewer == VIEWER_KEYED, f"expected {sorted(VIEWER_KEYED)} keyed by user_id; got {keyed_by_viewer}"
    got = {name: specs[name].partitions for name in keyed_by_viewer}
    assert got == dict.fromkeys(keyed_by_viewer, partitions), f"expected {partitions} partitions each; got {got}"


def test_other_topics_keep_their_own_partition_count() -> None:
    few, many = load_specs(Settings(partitions=2)), load_specs(Settings(partitions=64))
    fixed = {name for name in few if name not in VIEWER_KEYED}
    assert fixed, "expected topics not keyed by viewer (catalog, dead letters)"
    changed = {name: (few[name].partitions, many[name].partitions) for name in fixed}
    changed = {name: counts for name, counts in changed.items() if counts[0] != counts[1]}
    assert not changed, f"expected a fixed partition count; STREAM_PARTITIONS changed {changed}"
    assert all(few[name].partitions >= 1 for name in fixed)


def test_catalog_recommendations_and_model_snapshots_and_only_they_are_compacted() -> None:
    specs = load_specs(Settings())
    compacted = {name for name, spec in specs.items() if spec.cleanup_policy == "compact"}
    expected = {CATALOG, RECOMMENDATIONS, MODEL_SNAPSHOTS}
    assert compacted == expected, f"expected {sorted(expected)} compacted; got {compacted}"
    for name in compacted:
        configs = specs[name].configs()
        assert configs["cleanup.policy"] == "compact" and configs["retention.ms"] == "-1", f"{name}: {configs}"


def test_topics_holding_viewers_data_let_it_go_within_a_day_of_its_time() -> None:
    """What the README's privacy section promises: segments roll daily, compaction and tombstones within a day."""
    specs = load_specs(Settings())
    for name, spec in specs.items():
        if spec.key in ("user_id", "the original key"):
            assert int(spec.configs()["segment.ms"]) <= 86_400_000, name
    recs = specs[RECOMMENDATIONS].configs()
    assert {k: recs[k] for k in ERASE_WITHIN_A_DAY} == ERASE_WITHIN_A_DAY


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_each_input_topic_names_a_dead_letter_topic_with_its_own_spec(topic: str) -> None:
    specs = load_specs(Settings())
    dead_letter = specs[topic].dead_letter
    assert dead_letter, f"{topic}: expected a dead-letter topic; got {dead_letter!r}"
    assert dead_letter in specs, (
        f"{topic}: expected a spec for its dead-letter topic {dead_letter!r}; none in {TOPICS_DIR}"
    )
    spec = specs[dead_letter]
    assert spec.value_schema == "schemas/dead-letter.json", f"{dead_letter}: got value schema {spec.value_schema!r}"
    assert spec.dead_letter is None, f"{dead_letter}: a dead-letter topic needs none of its own; got {spec.dead_letter}"
    assert spec.cleanup_policy == "delete", f"{dead_letter}: expected delete; got {spec.cleanup_policy!r}"


def test_only_input_topics_have_dead_letter_topics() -> None:
    specs = load_specs(Settings())
    with_dead_letters = {name for name, spec in specs.items() if spec.dead_letter}
    assert with_dead_letters == set(INPUT_TOPICS), f"expected {sorted(INPUT_TOPICS)}; got {sorted(with_dead_letters)}"


@pytest.mark.parametrize(("prefix", "expected"), [("", "catalog"), ("run1.", "run1.catalog"), ("t-", "t-catalog")])
def test_topic_applies_the_prefix(prefix: str, expected: str) -> None:
    assert Settings(topic_prefix=prefix).topic(CATALOG) == expected


def test_the_prefix_also_scopes_the_faust_app_id() -> None:
    assert Settings(topic_prefix="run1.", app_id="stream").faust_id == "run1.stream"


# --- settings from the environment ------------------------------------------------------------


def test_from_env_gives_the_defaults_when_the_environment_is_empty() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_treats_an_empty_variable_as_unset() -> None:
    assert Settings.from_env(dict.fromkeys(VARIABLES.values(), "")) == Settings()


def test_from_env_ignores_variables_it_does_not_know() -> None:
    assert Settings.from_env({"STREAM_NOT_A_SETTING": "1", "PATH": "/bin"}) == Settings()


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("STREAM_TOP_K", "5", "top_k", 5),
        ("STREAM_PARTITIONS", "12", "partitions", 12),
        ("STREAM_CHECKPOINT_S", "2.5", "checkpoint_s", 2.5),
        ("STREAM_HALF_LIFE_DAYS", "7", "half_life_days", 7.0),
        ("STREAM_DATA_DIR", "/var/lib/stream", "data_dir", Path("/var/lib/stream")),
        ("STREAM_BOOTSTRAP", "kafka-1:9092,kafka-2:9092", "bootstrap", "kafka-1:9092,kafka-2:9092"),
        ("STREAM_LOG_LEVEL", "debug", "log_level", "debug"),
    ],
)
def test_from_env_parses_each_typed_field(variable: str, raw: str, field: str, expected: Any) -> None:
    value = getattr(Settings.from_env({variable: raw}), field)
    assert value == expected and type(value) is type(expected), (
        f"{variable}={raw!r}: expected {field} = {expected!r} ({type(expected).__name__}); "
        f"got {value!r} ({type(value).__name__})"
    )


@pytest.mark.parametrize(
    ("variable", "raw", "kind"),
    [
        ("STREAM_PARTITIONS", "eight", "int"),
        ("STREAM_TOP_K", "2.5", "int"),
        ("STREAM_WEB_PORT", "0x1f90", "int"),
        ("STREAM_CHECKPOINT_S", "fast", "float"),
        ("STREAM_SESSION_TIMEOUT_S", "10s", "float"),
    ],
)
def test_a_value_that_does_not_parse_raises_settings_error_naming_variable_and_value(
    variable: str, raw: str, kind: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    reason = str(caught.value)
    expected = f"{variable} must be a {kind}, got {raw!r}"
    assert reason == expected, f"expected {expected!r}; got {reason!r}"


@pytest.mark.parametrize("raw", ["0", "-3"])
def test_fewer_than_one_partition_is_rejected(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STREAM_PARTITIONS": raw})
    reason = str(caught.value)
    assert "STREAM_PARTITIONS" in reason and f"got {raw}" in reason, f"expected the variable and {raw}; got {reason!r}"


def test_one_partition_is_accepted() -> None:
    assert Settings.from_env({"STREAM_PARTITIONS": "1"}).partitions == 1


@pytest.mark.parametrize(("timeout", "heartbeat"), [("3", "1"), ("2", "1"), ("10", "4")])
def test_a_session_timeout_not_above_three_heartbeats_is_rejected(timeout: str, heartbeat: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STREAM_SESSION_TIMEOUT_S": timeout, "STREAM_HEARTBEAT_S": heartbeat})
    reason = str(caught.value)
    assert "STREAM_SESSION_TIMEOUT_S" in reason and f"STREAM_HEARTBEAT_S={float(heartbeat)}" in reason, (
        f"expected both variables named; got {reason!r}"
    )
    assert reason.endswith(f"got {float(timeout)}"), f"expected the timeout that arrived; got {reason!r}"


def test_a_session_timeout_just_above_three_heartbeats_is_accepted() -> None:
    s = Settings.from_env({"STREAM_SESSION_TIMEOUT_S": "3.5", "STREAM_HEARTBEAT_S": "1"})
    assert (s.session_timeout_s, s.heartbeat_s) == (3.5, 1.0)


@pytest.mark.parametrize("lead", ["1", "1.5", "-0.1"])
def test_a_refresh_lead_not_a_share_under_one_is_rejected(lead: str) -> None:
    with pytest.raises(SettingsError, match=f"STREAM_REFRESH_LEAD must be .*, got {float(lead)}"):
        Settings.from_env({"STREAM_REFRESH_LEAD": lead})


def test_the_refresh_lead_is_a_share_of_the_refresh_age() -> None:
    refresher = Refresher.of(Settings.from_env({"STREAM_REFRESH_AFTER_S": "600", "STREAM_REFRESH_LEAD": "0.25"}))
    assert refresher is not None and (refresher.after_ms, refresher.lead_ms) == (600_000, 150_000)
    assert Refresher.of(Settings.from_env({"STREAM_REFRESH_AFTER_S": "0"})) is None


@pytest.mark.parametrize("level", ["verbose", "INFO", "warning", "trace"])
def test_an_unknown_log_level_is_rejected(level: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STREAM_LOG_LEVEL": level})
    reason = str(caught.value)
    assert "STREAM_LOG_LEVEL" in reason and repr(level) in reason, f"expected variable and {level!r}; got {reason!r}"


@pytest.mark.parametrize("level", ["debug", "info", "warn", "error"])
def test_each_documented_log_level_is_accepted(level: str) -> None:
    assert Settings.from_env({"STREAM_LOG_LEVEL": level}).log_level == level


def test_variables_map_every_field_to_its_own_stream_variable() -> None:
    names = [f.name for f in fields(Settings)]
    assert sorted(VARIABLES) == sorted(names), f"expected a variable for each of {names}; got {sorted(VARIABLES)}"
    assert len(set(VARIABLES.values())) == len(VARIABLES), f"expected one field per variable; got {VARIABLES}"
    wrong = {name: var for name, var in VARIABLES.items() if var != f"STREAM_{name.upper()}"}
    assert not wrong, f"expected STREAM_<FIELD> names; got {wrong}"


def test_each_variable_sets_its_own_field_and_no_other() -> None:
    """Setting one variable changes exactly the field VARIABLES maps it to."""
    default = Settings()
    for name, variable in VARIABLES.items():
        before = getattr(default, name)
        # a value unlike every default that passes check() on its own
        sample = "3" if isinstance(before, int) else "3.25" if isinstance(before, float) else "debug"
        # three heartbeats must stay under the session timeout; the refresh lead is a share, under 1
        sample = {"heartbeat_s": "1.25", "refresh_lead": "0.25"}.get(name, sample)
        changed = Settings.from_env({variable: sample})
        diff = {f.name for f in fields(Settings) if getattr(changed, f.name) != getattr(default, f.name)}
        assert diff == {name}, f"{variable}: expected only {name} to change; changed {sorted(diff)}"
