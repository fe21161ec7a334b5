"""odistill keys / registry / vehicle from the command line, bad moves refused with exit 2."""
from __future__ import annotations

import json

import pytest

from stream.cli import main


def test_the_registry_commands_publish_promote_and_roll_back(tmp_path, capsys):
    key = tmp_path / "keys" / "fleet.pem"
    assert main(["keys", "new", str(key)]) == 0 and key.is_file() and (tmp_path / "keys" / "fleet.pem.pub").is_file()
    assert main(["keys", "new", str(key)]) == 2  # never overwritten
    folder = str(tmp_path / "registry")
    assert main(["registry", "init", folder, "--key", str(key)]) == 0
    for n in (1, 2):
        bundle = tmp_path / f"b{n}"
        bundle.mkdir()
        (bundle / "student.onnx").write_bytes(bytes([n]) * 64)
        (bundle / "manifest.json").write_text(json.dumps({"teacher": "sim", "n": n}))
        assert main(["registry", "add", folder, str(bundle)]) == 0
    for version in (1, 2):
        assert main(["registry", "promote", folder, str(version), "approved", "--reason", "gate"]) == 0
        assert main(["registry", "promote", folder, str(version), "deployed", "--reason", "fleet"]) == 0
    capsys.readouterr()
    assert main(["registry", "promote", folder, "1", "approved", "--reason", "again"]) == 2
    assert "stages only go forward" in capsys.readouterr().err
    assert main(["registry", "rollback", folder, "--reason", "v2 misbehaves"]) == 0
    assert "v3 deployed: the files of v1" in capsys.readouterr().out
    assert main(["registry", "list", folder]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listing] == [["v1", "retired"], ["v2", "retired"], ["v3", "deployed"]]
    assert main(["registry", "show", folder, "3"]) == 0 and "v2 misbehaves" in capsys.readouterr().out


def test_the_vehicle_command_names_a_missing_bundle(tmp_path, capsys):
    assert main(["vehicle", "--bundle", str(tmp_path), "--frames", "2"]) == 2
    assert "no manifest.json: not a student bundle" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="needs --root"):
        main(["vehicle", "--registry", str(tmp_path), "--frames", "2"])
