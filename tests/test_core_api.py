"""MC-Learn outside the study: its own config, a plain PyTorch loop's context (PlainContext), and
the README's plain-loop example run as written."""
import dataclasses

import mclearn_core as mc


def test_mclearn_config_defaults_are_the_study_configs():
    """Every MCLearnConfig field is a study Config field with the same default, so a trainer reads
    the same knob values from either (MCLearn and MCLearnPaper read their config by attribute)."""
    study = {f.name: f.default for f in dataclasses.fields(mc.Config)}
    for field in dataclasses.fields(mc.MCLearnConfig):
        assert field.name in study, f"MCLearnConfig.{field.name} is not a Config field"
        assert field.default == study[field.name], field.name
