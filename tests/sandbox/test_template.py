"""The sandbox reads the real template.yaml; its small intrinsic resolver is tested here."""

import pytest

from ferry_cli.sandbox.sandbox import REPO_ROOT
from ferry_cli.sandbox.template import Resolver, Template, load_yaml, substitute_definition


def resolver():
    return Resolver(
        {"Bucket": "b-1", "Clusters": ["prod", "staging"], "Env": "dev"},
        {("Fn", "Arn"): "arn:fn"},
        {"AWS::Region": "us-east-1", "AWS::Partition": "aws"},
    )


def test_short_tags_become_intrinsics(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("A: !Ref X\nB: !GetAtt Fn.Arn\nC: !Sub 'x-${Env}'\nD: !Join [',', !Ref Clusters]\n")
    assert load_yaml(path) == {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["Fn", "Arn"]},
        "C": {"Fn::Sub": "x-${Env}"},
        "D": {"Fn::Join": [",", {"Ref": "Clusters"}]},
    }


def test_intrinsics_resolve_against_the_sandbox_resources():
    r = resolver()
    assert r.resolve({"Ref": "Bucket"}) == "b-1"
    assert r.resolve({"Fn::GetAtt": ["Fn", "Arn"]}) == "arn:fn"
    assert r.resolve({"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/${!Literal}"}) == "arn:aws:s3:::b-1/${Literal}"
    assert r.resolve({"Fn::Sub": ["${X}-${Env}", {"X": {"Ref": "Bucket"}}]}) == "b-1-dev"
    assert r.resolve({"Fn::Join": [",", {"Ref": "Clusters"}]}) == "prod,staging"
    assert r.resolve({"Fn::Select": [1, {"Ref": "Clusters"}]}) == "staging"


def test_what_the_sandbox_cannot_resolve_is_an_error_not_a_guess():
    with pytest.raises(KeyError, match="cannot resolve !Ref Nope"):
        resolver().resolve({"Ref": "Nope"})
    with pytest.raises(KeyError, match="does not resolve Fn::If"):
        resolver().resolve({"Fn::If": ["c", 1, 2]})


def test_definition_substitutions_must_cover_every_key():
    assert substitute_definition('{"R": "${A}"}', {"A": "arn:1"}) == {"R": "arn:1"}
    with pytest.raises(KeyError, match=r"the ASL uses \$\{B\}"):
        substitute_definition('{"R": "${B}"}', {"A": "arn:1"})


def test_the_real_template_has_one_state_machine_and_handlers_that_exist():
    template = Template.load(REPO_ROOT)
    _, props, uri = template.state_machine()
    assert (REPO_ROOT / uri).exists()
    functions = template.functions()
    assert functions, "template.yaml declares no functions"
    for fn in functions.values():
        module, _, _ = fn.handler.rpartition(".")
        assert (REPO_ROOT / fn.code_uri / f"{module}.py").exists(), fn.logical_id
    assert functions["RouterFunction"].rules["EcrPush"]["detail-type"] == ["ECR Image Action"]
