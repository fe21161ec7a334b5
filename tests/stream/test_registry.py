"""The model registry (stream.registry): a TUF repository of student bundles, its stages and rollback,
and the vehicle's client refusing tampered, replayed, frozen or truncated updates while it keeps the
version it holds."""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import stat
import tarfile
import threading
from datetime import datetime, timedelta, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, TargetFile

from stream.registry import (Registry, RegistryConfig, RegistryError, current_deployed, fetch_deployed, new_key,
                             safe_extract)


def make_bundle(folder: Path, weights: bytes, **manifest) -> Path:
    folder.mkdir(parents=True)
    (folder / "student.safetensors").write_bytes(weights)
    (folder / "student.onnx").write_bytes(weights[::-1])
    (folder / "manifest.json").write_text(json.dumps({
        "time": "2025-05-01T12:00:00Z", "label_space": "canonical-19", "input": {"height": 256, "width": 512},
        "teacher": "segformer-b5", "frames": 1000, "metrics": {"miou": 0.61, "robust_miou": 0.4,
                                                               "per_domain": {"clear@oldtown": 0.7}},
        **manifest}))
    return folder


@pytest.fixture()
def key(tmp_path) -> Path:
    path = tmp_path / "keys" / "fleet.pem"
    new_key(path)
    return path


@pytest.fixture()
def registry(tmp_path, key) -> Registry:
    return Registry.init(tmp_path / "registry", key, user="tester")


@contextlib.contextmanager
def serve(folder: Path, truncate: bool = False):
    """The folder over loopback HTTP (port 0); ``truncate`` cuts every bundle's body in half."""

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            if truncate and self.path.endswith(".tar.gz"):
                data = Path(self.translate_path(self.path)).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_new_key_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "k" / "root.pem"
    keyid = new_key(path)
    assert len(keyid) == 64 and int(keyid, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in (tmp_path / "k" / "root.pem.pub").read_bytes()
    with pytest.raises(RegistryError, match="root.pem: already exists"):
        new_key(path)


def test_publish_promote_list_show(tmp_path):
    keys = {role: tmp_path / "keys" / f"{role}.pem" for role in ("root", "targets", "snapshot", "timestamp")}
    for path in keys.values():
        new_key(path)
    registry = Registry.init(tmp_path / "registry", keys, user="tester")
    meta = tmp_path / "registry" / "metadata"
    assert {p.name for p in meta.iterdir()} >= {"1.root.json", "root.json", "1.targets.json", "1.snapshot.json",
                                                "timestamp.json"}
    root = Metadata.from_file(str(meta / "root.json")).signed
    assert root.consistent_snapshot and len({tuple(role.keyids) for role in root.roles.values()}) == 4

    first = registry.add_bundle(make_bundle(tmp_path / "b1", b"one"))
    tar = tmp_path / "b2.tar.gz"  # a packed bundle wrapped in one folder
    with tarfile.open(tar, "w:gz") as archive:
        archive.add(make_bundle(tmp_path / "b2", b"two", parent=1), arcname="student-2")
    second = registry.add_bundle(tar)
    third = registry.add_bundle(make_bundle(tmp_path / "b3", b"three", version=99), stage="approved", reason="ok")
    assert [(b.version, b.stage, b.parent) for b in (first, second, third)] == [
        (1, "candidate", None), (2, "candidate", 1), (3, "approved", None)]
    assert (tmp_path / "registry" / "targets" / f"{first.sha256}.bundle-1.tar.gz").stat().st_size == first.length
    assert set(first.files) == {"student.safetensors", "student.onnx"}
    assert first.summary["teacher"] == "segformer-b5" and first.summary["metrics"]["miou"] == 0.61

    registry.promote(1, "approved", "passed the scenario suite")
    registry.promote(1, "deployed", "fleet-wide")
    registry.promote(2, "retired", "worse at night")
    registry.promote(3, "deployed", "better in rain")
    assert [(b.version, b.stage) for b in registry.list()] == [(1, "retired"), (2, "retired"), (3, "deployed")]
    shown = Registry(tmp_path / "registry").show(1)  # a fresh reader, keys from registry.json
    assert [(h["stage"], h["by"]) for h in shown.history] == [
        ("candidate", "tester"), ("approved", "tester"), ("deployed", "tester"), ("retired", "tester")]
    assert shown.history[-1]["reason"] == "replaced by version 3: better in rain"
    assert "fleet-wide" in shown.describe()
    timestamp = Metadata.from_file(str(meta / "timestamp.json")).signed
    assert timestamp.version == 8  # init, 3 bundles, 4 moves
    assert (meta / f"{timestamp.snapshot_meta.version}.snapshot.json").is_file()

    version, path, manifest = fetch_deployed(tmp_path / "registry", registry.root_path, tmp_path / "car")
    assert version == 3 and manifest["version"] == 3 and (path / "student.safetensors").read_bytes() == b"three"


def test_refused_moves_and_keys(tmp_path, registry, key):
    registry.add_bundle(make_bundle(tmp_path / "b1", b"one"))
    folder = registry.folder
    with pytest.raises(RegistryError, match="version 1 is candidate; it cannot move to deployed"):
        registry.promote(1, "deployed", "skip approval")
    registry.promote(1, "approved", "ok")
    registry.promote(1, "deployed", "ok")
    with pytest.raises(RegistryError, match="version 1 is deployed; it cannot move to approved .stages only go"):
        registry.promote(1, "approved", "back")
    with pytest.raises(RegistryError, match="deploying another version or by a rollback"):
        registry.promote(1, "retired", "stop")
    with pytest.raises(RegistryError, match="unknown stage 'live'"):
        registry.promote(1, "live", "x")
    with pytest.raises(RegistryError, match=r"no version 7 \(versions 1..1\)"):
        registry.promote(7, "approved", "x")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.promote(1, "approved", " ")
    with pytest.raises(RegistryError, match="enters as candidate or approved, not 'deployed'"):
        registry.add_bundle(make_bundle(tmp_path / "b2", b"two"), stage="deployed")
    with pytest.raises(RegistryError, match="nothing to roll back to: version 1 is the only deployment"):
        registry.rollback("bad")
    with pytest.raises(RegistryError, match="a registry is already there"):
        Registry.init(folder, key)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}")
    with pytest.raises(RegistryError, match="no model file beside manifest.json"):
        registry.add_bundle(empty)
    other = tmp_path / "other.pem"
    new_key(other)
    with pytest.raises(RegistryError, match="other.pem: not a targets key of"):
        Registry(folder, other).add_bundle(make_bundle(tmp_path / "b3", b"three"))
    assert [b.version for b in registry.list()] == [1]


def test_rollback_republishes_the_old_files_as_a_higher_version(tmp_path, registry):
    for version, weights in ((1, b"good"), (2, b"bad")):
        registry.add_bundle(make_bundle(tmp_path / f"b{version}", weights), stage="approved")
        registry.promote(version, "deployed", "ship it")
    car = tmp_path / "car"
    assert fetch_deployed(registry.folder, registry.root_path, car).version == 2
    before = Metadata.from_file(str(registry.metadata / "timestamp.json")).signed.version

    rolled = registry.rollback("lane keeping regressed")
    assert (rolled.version, rolled.stage, rolled.parent, rolled.republishes) == (3, "deployed", 2, 1)
    assert rolled.files == registry.show(1).files
    assert [(b.version, b.stage) for b in registry.list()] == [(1, "retired"), (2, "retired"), (3, "deployed")]
    assert "rolled back" in registry.show(2).history[-1]["reason"]
    assert Metadata.from_file(str(registry.metadata / "timestamp.json")).signed.version == before + 1

    version, path, manifest = fetch_deployed(registry.folder.as_uri(), registry.root_path, car)  # file:// URL
    assert (version, manifest["parent"], manifest["republishes"]) == (3, 2, 1)
    assert (path / "student.safetensors").read_bytes() == b"good"
    assert current_deployed(car).version == 3 and (car / "bundles" / "2").is_dir()  # the one before is kept
    with pytest.raises(RegistryError, match="nothing to roll back to: version 3"):
        registry.rollback("again")


def test_fetch_over_http_and_a_truncated_download(tmp_path, registry):
    registry.add_bundle(make_bundle(tmp_path / "b1", b"one" * 1000), stage="approved")
    registry.promote(1, "deployed", "ship it")
    car = tmp_path / "car"
    with serve(registry.folder) as url:
        version, path, _ = fetch_deployed(url, registry.root_path, car)
        assert version == 1 and (path / "student.safetensors").read_bytes() == b"one" * 1000
        assert fetch_deployed(url, registry.root_path, car).version == 1  # up to date: nothing downloaded
    registry.add_bundle(make_bundle(tmp_path / "b2", b"two" * 1000), stage="approved")
    registry.promote(2, "deployed", "ship it")
    with serve(registry.folder, truncate=True) as url:
        with pytest.raises(RegistryError, match="version 2's bundle refused .* keeping version 1"):
            fetch_deployed(url, registry.root_path, car)
    held = current_deployed(car)
    assert held.version == 1 and (held.path / "student.safetensors").read_bytes() == b"one" * 1000
    with serve(registry.folder) as url:
        assert fetch_deployed(url, registry.root_path, car).version == 2


def _flip_bundle_byte(folder: Path, saved: dict) -> None:
    bundle = next((folder / "targets").glob("*.bundle-2.tar.gz"))
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.write_bytes(bytes(data))


def _flip_targets_byte(folder: Path, saved: dict) -> None:
    newest = max((folder / "metadata").glob("*.targets.json"), key=lambda p: int(p.name.split(".")[0]))
    data = newest.read_bytes()
    assert b"ship it" in data
    newest.write_bytes(data.replace(b"ship it", b"ship 1t"))


def _sign_with_another_key(folder: Path, saved: dict) -> None:
    timestamp = Metadata.from_file(str(folder / "metadata" / "timestamp.json"))
    timestamp.signed.version += 1
    timestamp.sign(CryptoSigner.generate_ed25519())
    (folder / "metadata" / "timestamp.json").write_bytes(timestamp.to_bytes())


def _replay_timestamp(folder: Path, saved: dict) -> None:
    (folder / "metadata" / "timestamp.json").write_bytes(saved["timestamp"])


def _replay_snapshot(folder: Path, saved: dict) -> None:
    version = Metadata.from_file(str(folder / "metadata" / "timestamp.json")).signed.snapshot_meta.version
    (folder / "metadata" / f"{version}.snapshot.json").write_bytes(saved["snapshot"])


@pytest.mark.parametrize("attack, says", [
    (_flip_bundle_byte, "LengthOrHashMismatchError"),
    (_flip_targets_byte, "UnsignedMetadataError"),
    (_sign_with_another_key, "UnsignedMetadataError"),
    (_replay_timestamp, "BadVersionNumberError"),
    (_replay_snapshot, "BadVersionNumberError"),
], ids=["bundle-byte", "targets-byte", "other-key", "replayed-timestamp", "replayed-snapshot"])
def test_attacks_are_refused_and_the_vehicle_keeps_its_version(tmp_path, registry, attack, says):
    saved = {"timestamp": (registry.metadata / "timestamp.json").read_bytes()}  # timestamp v1
    registry.add_bundle(make_bundle(tmp_path / "b1", b"one"), stage="approved")
    registry.add_bundle(make_bundle(tmp_path / "b2", b"two"), stage="approved")
    registry.promote(1, "deployed", "first")
    car = tmp_path / "car"
    assert fetch_deployed(registry.folder, registry.root_path, car).version == 1
    snapshot = Metadata.from_file(str(registry.metadata / "timestamp.json")).signed.snapshot_meta.version
    saved["snapshot"] = (registry.metadata / f"{snapshot}.snapshot.json").read_bytes()
    registry.promote(2, "deployed", "ship it")
    attack(registry.folder, saved)
    with pytest.raises(RegistryError, match=f"{says}.*keeping version 1"):
        fetch_deployed(registry.folder, registry.root_path, car)
    held = current_deployed(car)  # verifies its files against the manifest
    assert held.version == 1 and (held.path / "student.safetensors").read_bytes() == b"one"


def test_frozen_registry_is_refused_until_it_is_re_signed(tmp_path, key):
    folder = tmp_path / "registry"
    registry = Registry.init(folder, key)
    registry.add_bundle(make_bundle(tmp_path / "b1", b"one"), stage="approved")
    registry.add_bundle(make_bundle(tmp_path / "b2", b"two"), stage="approved")
    registry.promote(1, "deployed", "first")
    car = tmp_path / "car"
    assert fetch_deployed(folder, registry.root_path, car).version == 1
    ten_days_ago = lambda: datetime.now(timezone.utc) - timedelta(days=10)  # noqa: E731
    Registry(folder, clock=ten_days_ago).promote(2, "deployed", "stale")  # its timestamp ran out 9 days ago
    with pytest.raises(RegistryError, match="ExpiredMetadataError: timestamp.json is expired.*keeping version 1"):
        fetch_deployed(folder, registry.root_path, car)
    assert current_deployed(car).version == 1
    Registry(folder, config=RegistryConfig(timestamp_days=0.5)).refresh()
    assert fetch_deployed(folder, registry.root_path, car).version == 2


def _archive(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("manifest.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member, says", [
    (tarfile.TarInfo("../escape.bin"), "member '../escape.bin' climbs out of the folder"),
    (tarfile.TarInfo("a/../../escape.bin"), "member 'a/../../escape.bin' climbs out"),
    (tarfile.TarInfo("/etc/escape.bin"), "member '/etc/escape.bin' has an absolute path"),
    (_link("model.bin", tarfile.SYMTYPE, "/etc/passwd"), "member 'model.bin' is a symbolic link"),
    (_link("model.bin", tarfile.LNKTYPE, "manifest.json"), "member 'model.bin' is a hard link"),
    (_link("pipe", tarfile.FIFOTYPE, ""), "member 'pipe' is a device or fifo"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "fifo"])
def test_safe_extract_refuses_unsafe_members(tmp_path, member, says):
    archive = _archive(tmp_path / "bad.tar.gz", member, b"x")
    with pytest.raises(RegistryError, match=f"bad.tar.gz: {says}"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.bin").exists()


def test_safe_extract_unpacks_a_plain_archive_and_refuses_a_truncated_one(tmp_path):
    archive = _archive(tmp_path / "ok.tar.gz", tarfile.TarInfo("weights/model.bin"), b"w" * 5000)
    assert sorted(safe_extract(archive, tmp_path / "out")) == ["manifest.json", "weights/model.bin"]
    assert (tmp_path / "out" / "weights" / "model.bin").read_bytes() == b"w" * 5000
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(RegistryError, match="cut.tar.gz: not a readable tar archive"):
        safe_extract(cut, tmp_path / "out2")
    assert os.path.exists(archive)


def test_an_expiring_root_is_renewed_along_the_chain_the_vehicle_holds(tmp_path, key):
    folder = tmp_path / "registry"
    a_year_ago = lambda: datetime.now(timezone.utc) - timedelta(days=366)  # noqa: E731
    registry = Registry.init(folder, key, clock=a_year_ago)  # its root expired yesterday
    registry.add_bundle(make_bundle(tmp_path / "b1", b"one"), stage="approved")
    Registry(folder).promote(1, "deployed", "first")
    with pytest.raises(RegistryError, match="root.json is expired"):
        fetch_deployed(folder, registry.root_path, tmp_path / "car")
    Registry(folder).refresh(root=True)
    assert fetch_deployed(folder, registry.root_path, tmp_path / "car").version == 1
    assert (folder / "metadata" / "2.root.json").is_file()


def test_a_deployed_pointer_naming_another_file_is_refused(tmp_path, registry, monkeypatch):
    registry.add_bundle(make_bundle(tmp_path / "b1", b"one"), stage="approved")
    original = Registry._point_to

    def sneaky(self, version):
        original(self, version)
        data = (json.dumps({"version": version, "target": "../../escaped.tar.gz"}) + "\n").encode()
        target = TargetFile.from_data("deployed.json", data, ["sha256"])
        (self.targets_dir / f"{target.hashes['sha256']}.deployed.json").write_bytes(data)
        self._targets.signed.targets["deployed.json"] = target

    monkeypatch.setattr(Registry, "_point_to", sneaky)
    registry.promote(1, "deployed", "signed, but pointing outside the cache")
    with pytest.raises(RegistryError, match="names target '../../escaped.tar.gz' for version 1"):
        fetch_deployed(registry.folder, registry.root_path, tmp_path / "car")
    assert not (tmp_path / "escaped.tar.gz").exists()


def test_a_damaged_held_bundle_does_not_block_the_next_update(tmp_path, registry):
    registry.add_bundle(make_bundle(tmp_path / "b1", b"one"), stage="approved")
    registry.add_bundle(make_bundle(tmp_path / "b2", b"two"), stage="approved")
    registry.promote(1, "deployed", "first")
    car = tmp_path / "car"
    held = fetch_deployed(registry.folder, registry.root_path, car)
    (held.path / "manifest.json").unlink()  # a power cut, a bad disk
    registry.promote(2, "deployed", "second")
    assert fetch_deployed(registry.folder, registry.root_path, car).version == 2
