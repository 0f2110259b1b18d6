"""SWE-bench adapter: our generated instances round-trip through SWE-bench's own format, and bad
instances are typed errors that name the field."""

from __future__ import annotations

import json

import pytest

from pivot_envs.domains.swe.swebench_format import (
    SWEBENCH_FIELDS,
    SWEBenchFormatError,
    changed_files,
    check_instance,
    instance_from_task,
    read_instances,
    task_from_instance,
    to_swebench,
    write_instances,
)


def test_round_trip_of_every_generated_instance(instances, tmp_path):
    path = tmp_path / "swebench.jsonl"
    write_instances(instances, path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:  # SWE-bench's own encoding: every field present, test lists as JSON strings
        assert set(SWEBENCH_FIELDS) <= set(row)
        assert isinstance(row["FAIL_TO_PASS"], str) and isinstance(json.loads(row["PASS_TO_PASS"]), list)
    back = read_instances(path)
    assert len(back) == len(instances)
    for original, read in zip(instances, back):
        task = task_from_instance(read)
        assert task == task_from_instance(original)
        again = to_swebench(instance_from_task(task), extras=False)
        assert again == to_swebench(original, extras=False)
        assert changed_files(original["patch"]) == [original["mutation"]["path"]]


def test_an_instance_from_elsewhere_needs_an_image(instances):
    foreign = to_swebench(instances[0], extras=False)  # no image_name, no bug_patch
    with pytest.raises(SWEBenchFormatError, match="image"):
        task_from_instance(foreign)
    task = task_from_instance(foreign, image="my/swe-image:1")
    assert task["image"] == "my/swe-image:1" and task["bug_patch"] == "" and task["workdir"] == "/testbed"


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.pop("base_commit"), "base_commit"),
    (lambda r: r.update(FAIL_TO_PASS="[not json"), "FAIL_TO_PASS"),
    (lambda r: r.update(FAIL_TO_PASS="[]"), "FAIL_TO_PASS"),
    (lambda r: r.update(PASS_TO_PASS='[1, 2]'), "PASS_TO_PASS"),
    (lambda r: r.update(patch="this is not a diff\n@@ broken"), "patch"),
])
def test_bad_instances_name_the_field(instances, change, field):
    row = to_swebench(instances[0])
    change(row)
    with pytest.raises(SWEBenchFormatError) as err:
        check_instance(row)
    assert field in str(err.value)
