"""A profile file resumes only for the model and settings that made it: `pivotrl profile` of the base
and then `pivotrl run` from a warm-up write the same `profile.jsonl`, and the second must not reuse
the first's verdicts."""

from __future__ import annotations

from pivot_algo.pipeline import claim_profile_file


def test_a_profile_of_another_model_is_moved_aside_and_the_same_one_resumes(tmp_path):
    path = tmp_path / "profile.jsonl"
    claim_profile_file(path, {"model": "tiny", "profile": {"k": 8}})
    path.write_text('{"trajectory_id": "a", "turn": 0}\n')
    claim_profile_file(path, {"model": "tiny", "profile": {"k": 8}})
    assert path.exists()  # same maker: resumed
    claim_profile_file(path, {"model": "runs/x/warmup_sft/final", "profile": {"k": 8}})
    assert not path.exists()
    stale = list(tmp_path.glob("profile.stale-*.jsonl"))
    assert len(stale) == 1 and stale[0].read_text().startswith('{"trajectory_id": "a"')
    assert "warmup_sft" in (tmp_path / "profile.identity.json").read_text()


def test_a_retrained_policy_in_the_same_folder_is_another_model(tmp_path):
    from pivot_algo.pipeline import weights_digest

    folder = tmp_path / "warmup_sft" / "final"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights-1")
    first = weights_digest(str(folder))
    (folder / "model.safetensors").write_bytes(b"weights-2")
    assert first is not None and weights_digest(str(folder)) != first
    assert weights_digest("tiny") is None
