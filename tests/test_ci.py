"""The workflow users adopt and this project's .ci/run run the same steps in the same order."""

import re

import yaml
from conftest import PROJECT_ROOT


def steps_in_workflow():
    workflow = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    commands = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    return [re.fullmatch(r"bash \.ci/steps\.sh (\w+)", command.strip()).group(1) for command in commands]


def steps_in_ci_run():
    return re.findall(r"^bash \.ci/steps\.sh (\w+)$", (PROJECT_ROOT / ".ci" / "run").read_text(), flags=re.MULTILINE)


def test_workflow_and_ci_run_name_the_same_steps():
    assert (
        steps_in_workflow()
        == steps_in_ci_run()
        == ["install", "lint", "test", "lowest", "reproduce", "gate", "slow", "summary"]
    )


def test_every_step_exists_in_the_steps_script():
    script = (PROJECT_ROOT / ".ci" / "steps.sh").read_text()
    for step in steps_in_ci_run():
        assert re.search(rf"^step_{step}\(\) {{$", script, flags=re.MULTILINE), step
