"""The model registry: students as signed bundles in a TUF repository that any static file host serves.

A *bundle* is a ``.tar.gz`` holding the model file(s) and ``manifest.json`` (version, parent
version, time, label space, input spec, teacher, frames trained on, metrics at promotion, ...:
any JSON object; the registry writes ``version``, ``parent`` and ``files`` -- each model file's
length and sha256 -- into it). Bundles are the targets of a `TUF <https://theupdateframework.io>`_
repository (python-tuf's Metadata API on this side, ``tuf.ngclient.Updater`` on the vehicle's),
laid out in one folder as a static host serves it, with consistent snapshots::

    FOLDER/metadata/1.root.json, root.json        the root role (keys and thresholds)
    FOLDER/metadata/N.targets.json                the bundles: length, sha256 and custom data
    FOLDER/metadata/N.snapshot.json               the targets metadata's version
    FOLDER/metadata/timestamp.json                the snapshot's version (short-lived)
    FOLDER/targets/SHA256.bundle-V.tar.gz         bundle version V
    FOLDER/targets/SHA256.deployed.json           which version the fleet runs
    FOLDER/registry.json                          this side's settings: key *paths* and expiry
                                                  days (no key material; the host may skip it)

Each target's ``custom`` holds ``{"odistill": {version, parent, stage, created, manifest
summary, files, history}}``; the history lists every stage move with who, when and why. (The
manifest summary is a JSON *string* there: TUF's canonical JSON allows no floats.)
Stages only go forward: candidate -> approved -> deployed -> retired (candidates and approved
bundles may be retired directly; a deployed one is retired by deploying another or by
:meth:`Registry.rollback`). Versions are integers, one more per published bundle; a rollback
publishes the older model's files again as a new, higher version, so that metadata versions
only ever go up, as TUF requires. Every change re-signs targets, snapshot and timestamp
(:class:`RegistryConfig` sets their lifetimes; :meth:`Registry.refresh` re-signs them before the
timestamp runs out).

The vehicle holds only the trusted root (``metadata/1.root.json``): :func:`fetch_deployed`
refreshes the metadata, finds the deployed bundle, downloads and verifies it, unpacks it with
:func:`safe_extract` and switches to it only when every check passes; on any failure it raises
:class:`RegistryError` and the version it held stays on disk (:func:`current_deployed`).
The ngclient refuses rollback, freeze, mix-and-match and endless-data attacks.

Keys are Ed25519 (:func:`new_key`, ``odistill keys new``); one key may serve several roles.

Example:
    >>> import json, tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = new_key(tmp / "keys" / "fleet.pem")
    >>> registry = Registry.init(tmp / "registry", tmp / "keys" / "fleet.pem")  # one key, all roles
    >>> student = tmp / "student"; student.mkdir()
    >>> _ = (student / "student.safetensors").write_bytes(b"weights")
    >>> _ = (student / "manifest.json").write_text(json.dumps({"teacher": "segformer-b5", "frames": 1200}))
    >>> registry.add_bundle(student).version
    1
    >>> _ = registry.promote(1, "approved", "passed the scenario suite")
    >>> _ = registry.promote(1, "deployed", "fleet-wide")
    >>> [(b.version, b.stage, b.summary["teacher"]) for b in registry.list()]
    [(1, 'deployed', 'segformer-b5')]
    >>> version, path, manifest = fetch_deployed(tmp / "registry", registry.root_path, tmp / "vehicle")
    >>> version, sorted(p.name for p in path.iterdir()), manifest["frames"]
    (1, ['manifest.json', 'student.safetensors'], 1200)
    >>> registry.promote(1, "approved", "oops")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stream.registry.RegistryError: .../registry: version 1 is deployed; it cannot move to approved (stages only go forward: candidate -> approved -> deployed -> retired)
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping, NamedTuple
from urllib.parse import urlparse
from urllib.request import url2pathname

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

log = logging.getLogger(__name__)

ROLES = ("root", "targets", "snapshot", "timestamp")
STAGES = ("candidate", "approved", "deployed", "retired")
MOVES: dict[str, tuple[str, ...]] = {  # stage -> the stages promote() may move it to
    "candidate": ("approved", "retired"),
    "approved": ("deployed", "retired"),
    "deployed": (),  # retired only by deploying another version or by a rollback
    "retired": (),
}
MANIFEST = "manifest.json"
DEPLOYED_TARGET = "deployed.json"  # the pointer target: {"version": V, "target": "bundle-V.tar.gz"}
SETTINGS = "registry.json"
REGISTRY_FIELDS = ("version", "parent", "files")  # manifest fields the registry writes
SUMMARY_LIMIT = 400  # characters: a manifest value longer than this as JSON is summarised as "<N entries>"


class RegistryError(ValueError):
    """A registry, bundle, key or download that is refused; the message names it and what is wrong."""


@dataclass(frozen=True)
class RegistryConfig:
    """Registry settings: metadata lifetimes (days) and what a vehicle keeps on disk."""

    root_days: float = 365.0
    targets_days: float = 90.0
    snapshot_days: float = 30.0
    timestamp_days: float = 1.0  # the freeze window: refresh() at least this often
    keep_versions: int = 2  # vehicle: bundles kept unpacked (the current one and the one before)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise RegistryError(f"registry config: {f.name} must be > 0, got {value!r}")

    def expiry(self, role: str, now: datetime) -> datetime:
        """When ``role``'s metadata signed at ``now`` expires (whole seconds, UTC)."""
        days = {"root": self.root_days, "targets": self.targets_days, "snapshot": self.snapshot_days,
                "timestamp": self.timestamp_days}[role]
        return (now + timedelta(days=days)).replace(microsecond=0)


@dataclass(frozen=True)
class BundleInfo:
    """One published bundle as the signed targets metadata describes it."""

    version: int
    stage: str
    created: str  # ISO 8601 UTC, when the registry published it
    target: str  # the TUF target path, bundle-V.tar.gz
    sha256: str
    length: int
    parent: int | None
    summary: dict[str, Any]  # the manifest's fields, long values abbreviated
    files: dict[str, Any]  # model file name -> {"length", "sha256"}
    history: tuple[dict[str, Any], ...]  # stage moves: stage, time, by, reason
    republishes: int | None = None  # a rollback: the version whose files this one carries

    def describe(self) -> str:
        """A few lines for ``odistill registry show``."""
        lines = [f"version {self.version}  {self.stage}  created {self.created}",
                 f"  target {self.target}  {self.length} bytes  sha256 {self.sha256}",
                 f"  parent {self.parent if self.parent is not None else '-'}"
                 + (f"  (files of version {self.republishes})" if self.republishes is not None else "")]
        lines += [f"  file {name}  {meta['length']} bytes" for name, meta in sorted(self.files.items())]
        lines += [f"  {key}: {json.dumps(value, sort_keys=True)}" for key, value in sorted(self.summary.items())]
        lines += [f"  {h['time']}  -> {h['stage']}  by {h['by']}: {h['reason']}" for h in self.history]
        return "\n".join(lines)


class Deployed(NamedTuple):
    """What a vehicle runs: the version, the unpacked bundle's folder and its manifest."""

    version: int
    path: Path
    manifest: dict[str, Any]


# -- keys ---------------------------------------------------------------------------------------

def new_key(path: str | Path) -> str:
    """Write a new Ed25519 private key to ``path`` (PEM, PKCS#8, mode 0600) and its public key to
    ``path.pub`` (PEM); return the key's TUF key id. Refuses to overwrite either file."""
    path = Path(path)
    public = path.with_name(path.name + ".pub")
    for existing in (path, public):
        if existing.exists():
            raise RegistryError(f"{existing}: already exists; refusing to overwrite a key")
    path.parent.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public.write_bytes(private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    keyid = _signer(path).public_key.keyid
    log.info("new Ed25519 key %s (key id %s)", path, keyid)
    return keyid


def _signer(path: Path) -> CryptoSigner:
    """The signer of the Ed25519 private key file ``path``."""
    try:
        private_key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as error:
        raise RegistryError(f"{path}: cannot read the key ({error.strerror or error})") from error
    except (ValueError, TypeError) as error:
        raise RegistryError(f"{path}: not an unencrypted PEM private key ({error})") from error
    if not isinstance(private_key, Ed25519PrivateKey):
        raise RegistryError(f"{path}: not an Ed25519 key ({type(private_key).__name__}); make one with new_key")
    return CryptoSigner(private_key, SSlibKey.from_crypto(private_key.public_key(), scheme="ed25519"))


def _role_keys(keys: Mapping[str, str | Path] | str | Path) -> dict[str, Path]:
    """Role -> private key path: one path serves every role; a mapping must name all four."""
    if isinstance(keys, (str, Path)):
        return {role: Path(keys).resolve() for role in ROLES}
    unknown = sorted(set(keys) - set(ROLES))
    missing = [role for role in ROLES if role not in keys]
    if unknown or missing:
        raise RegistryError(f"registry keys: unknown roles {unknown}, missing roles {missing}; "
                            f"give a key for each of {', '.join(ROLES)} (one path may serve all)")
    return {role: Path(keys[role]).resolve() for role in ROLES}


# -- registry -----------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by a web server (0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


class Registry:
    """A registry folder (module docstring): publish bundles, move them through the stages, roll back.

    Reading (:meth:`list`, :meth:`show`) needs no keys; every change signs with the keys given
    here or, when none are, the key paths :meth:`init` wrote to ``registry.json``. ``clock``
    (a function returning an aware UTC datetime) and ``user`` (the history's "by") are for tests
    and tools.
    """

    def __init__(self, folder: str | Path, keys: Mapping[str, str | Path] | str | Path | None = None,
                 config: RegistryConfig | None = None, *, clock: Callable[[], datetime] | None = None,
                 user: str | None = None) -> None:
        self.folder = Path(folder)
        self.metadata = self.folder / "metadata"
        self.targets_dir = self.folder / "targets"
        if not (self.metadata / "root.json").is_file():
            raise RegistryError(f"{self.folder}: not a registry (no metadata/root.json); "
                                f"make one with Registry.init (odistill registry init)")
        settings = self._settings()
        if config is None:
            config = RegistryConfig(**settings.get("config", {}))
        self.config = config
        self._keys = _role_keys(keys) if keys is not None else {
            role: Path(path) for role, path in settings.get("keys", {}).items()}
        self.clock = clock or _now
        self.user = user or _user()
        self._load()

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def init(cls, folder: str | Path, keys: Mapping[str, str | Path] | str | Path,
             config: RegistryConfig | None = None, *, clock: Callable[[], datetime] | None = None,
             user: str | None = None) -> Registry:
        """Make an empty registry in ``folder``: root, targets, snapshot and timestamp metadata
        (version 1, consistent snapshots), signed with ``keys`` (role -> Ed25519 private key
        path, or one path for all roles)."""
        folder = Path(folder)
        if (folder / "metadata").exists():
            raise RegistryError(f"{folder}: a registry is already there (metadata/ exists); refusing to overwrite it")
        config = config or RegistryConfig()
        paths = _role_keys(keys)
        signers = {role: _signer(path) for role, path in paths.items()}
        now = (clock or _now)()
        root = Metadata(Root(expires=config.expiry("root", now), consistent_snapshot=True))
        for role, signer in signers.items():
            root.signed.add_key(signer.public_key, role)
        root.sign(signers["root"])
        metadata = folder / "metadata"
        root_bytes = root.to_bytes()
        _write(metadata / "1.root.json", root_bytes)
        _write(metadata / "root.json", root_bytes)
        targets = Metadata(Targets(expires=config.expiry("targets", now)))
        targets.sign(signers["targets"])
        targets_bytes = targets.to_bytes()
        _write(metadata / "1.targets.json", targets_bytes)
        snapshot = Metadata(Snapshot(expires=config.expiry("snapshot", now),
                                     meta={"targets.json": MetaFile(1, length=len(targets_bytes))}))
        snapshot.sign(signers["snapshot"])
        snapshot_bytes = snapshot.to_bytes()
        _write(metadata / "1.snapshot.json", snapshot_bytes)
        timestamp = Metadata(Timestamp(expires=config.expiry("timestamp", now),
                                       snapshot_meta=MetaFile(1, length=len(snapshot_bytes))))
        timestamp.sign(signers["timestamp"])
        _write(metadata / "timestamp.json", timestamp.to_bytes())
        (folder / "targets").mkdir(parents=True, exist_ok=True)
        settings = {"keys": {role: str(path) for role, path in paths.items()}, "config": asdict(config)}
        _write(folder / SETTINGS, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())
        log.info("registry %s: created (root key ids %s)", folder, root.signed.roles["root"].keyids)
        return cls(folder, config=config, clock=clock, user=user)

    @property
    def root_path(self) -> Path:
        """The trusted root a vehicle holds: ``metadata/1.root.json``."""
        return self.metadata / "1.root.json"

    # -- reading --------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        path = self.folder / SETTINGS
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RegistryError(f"{path}: unreadable registry settings ({error})") from error

    def _read(self, role: str, name: str) -> Metadata:
        path = self.metadata / name
        try:
            md = Metadata.from_bytes(path.read_bytes())
        except OSError as error:
            raise RegistryError(f"{path}: cannot read the {role} metadata ({error.strerror or error})") from error
        except DeserializationError as error:
            raise RegistryError(f"{path}: not valid {role} metadata ({error})") from error
        if md.signed.type != role:
            raise RegistryError(f"{path}: holds {md.signed.type} metadata, expected {role}")
        delegator = md if role == "root" else self._root
        try:
            delegator.signed.verify_delegate(role, md.signed_bytes, md.signatures)
        except tuf_errors.UnsignedMetadataError as error:
            raise RegistryError(f"{path}: bad {role} signature ({error})") from error
        return md

    def _load(self) -> None:
        """Read and verify the current metadata: root, timestamp, its snapshot, its targets."""
        self._root: Metadata[Root] = self._read("root", "root.json")
        self._timestamp: Metadata[Timestamp] = self._read("timestamp", "timestamp.json")
        self._snapshot: Metadata[Snapshot] = self._read(
            "snapshot", f"{self._timestamp.signed.snapshot_meta.version}.snapshot.json")
        self._targets: Metadata[Targets] = self._read(
            "targets", f"{self._snapshot.signed.meta['targets.json'].version}.targets.json")

    def _bundle_targets(self) -> dict[int, TargetFile]:
        out = {}
        for target in self._targets.signed.targets.values():
            record = (target.custom or {}).get("odistill")
            if record and target.path != DEPLOYED_TARGET:
                out[int(record["version"])] = target
        return dict(sorted(out.items()))

    @staticmethod
    def _info(target: TargetFile) -> BundleInfo:
        record = target.custom["odistill"]
        return BundleInfo(version=int(record["version"]), stage=record["stage"], created=record["created"],
                          target=target.path, sha256=target.hashes["sha256"], length=target.length,
                          parent=record.get("parent"), summary=json.loads(record.get("manifest", "{}")),
                          files=dict(record.get("files", {})), history=tuple(record.get("history", ())),
                          republishes=record.get("republishes"))

    def list(self) -> list[BundleInfo]:
        """Every published bundle, oldest version first."""
        return [self._info(target) for target in self._bundle_targets().values()]

    def show(self, version: int) -> BundleInfo:
        """The bundle of ``version``."""
        return self._info(self._target(version))

    def deployed(self) -> BundleInfo | None:
        """The bundle the fleet runs, if any."""
        return next((info for info in self.list() if info.stage == "deployed"), None)

    def _target(self, version: int) -> TargetFile:
        bundles = self._bundle_targets()
        if version not in bundles:
            have = f"versions {min(bundles)}..{max(bundles)}" if bundles else "no bundles yet"
            raise RegistryError(f"{self.folder}: no version {version} ({have})")
        return bundles[version]

    # -- writing --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, CryptoSigner]]:
        """Lock the folder, reload its metadata and yield the signers of the three online roles."""
        missing = [role for role in ("targets", "snapshot", "timestamp") if role not in self._keys]
        if missing:
            raise RegistryError(f"{self.folder}: no key paths for {', '.join(missing)} (pass keys=, or keep "
                                f"the {SETTINGS} that Registry.init wrote)")
        signers = {}
        for role in ("targets", "snapshot", "timestamp"):
            signer = _signer(self._keys[role])
            if signer.public_key.keyid not in self._root.signed.roles[role].keyids:
                raise RegistryError(f"{self._keys[role]}: not a {role} key of {self.folder} (key id "
                                    f"{signer.public_key.keyid}; the root lists "
                                    f"{self._root.signed.roles[role].keyids})")
            signers[role] = signer
        with open(self.folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._load()
                yield signers
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _publish(self, signers: Mapping[str, CryptoSigner], what: str) -> None:
        """Bump, sign and write targets, then snapshot, then timestamp (the one a client reads first)."""
        now = self.clock()

        def resign(metadata: Metadata, role: str) -> bytes:
            metadata.signed.version += 1
            metadata.signed.expires = self.config.expiry(role, now)
            metadata.sign(signers[role])
            return metadata.to_bytes()

        targets, snapshot, timestamp = self._targets.signed, self._snapshot.signed, self._timestamp.signed
        targets_bytes = resign(self._targets, "targets")
        _write(self.metadata / f"{targets.version}.targets.json", targets_bytes)
        snapshot.meta["targets.json"] = MetaFile(targets.version, length=len(targets_bytes))
        snapshot_bytes = resign(self._snapshot, "snapshot")
        _write(self.metadata / f"{snapshot.version}.snapshot.json", snapshot_bytes)
        timestamp.snapshot_meta = MetaFile(snapshot.version, length=len(snapshot_bytes))
        _write(self.metadata / "timestamp.json", resign(self._timestamp, "timestamp"))
        log.info("registry %s: %s (targets v%d, snapshot v%d, timestamp v%d)", self.folder, what,
                 targets.version, snapshot.version, timestamp.version)

    def _event(self, stage: str, reason: str, **extra: Any) -> dict[str, Any]:
        return {"stage": stage, "time": _iso(self.clock()), "by": self.user, "reason": reason,
                "at": self._targets.signed.version + 1, **extra}

    def _store(self, staged: Path, version: int, record: dict[str, Any]) -> TargetFile:
        """Pack the bundle folder ``staged`` as target ``bundle-V.tar.gz`` with ``record`` as custom data."""
        path = f"bundle-{version}.tar.gz"
        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".pack-") as scratch:
            packed = Path(scratch) / path
            _pack(staged, packed)
            target = TargetFile.from_file(path, str(packed), ["sha256"])
            os.chmod(packed, 0o644)
            self.targets_dir.mkdir(parents=True, exist_ok=True)
            os.replace(packed, self.targets_dir / f"{target.hashes['sha256']}.{path}")
        target.unrecognized_fields["custom"] = {"odistill": record}
        self._targets.signed.targets[path] = target
        return target

    def _point_to(self, version: int) -> None:
        """Publish the ``deployed.json`` target naming ``version``."""
        data = (json.dumps({"version": version, "target": f"bundle-{version}.tar.gz",
                            "time": _iso(self.clock())}, sort_keys=True) + "\n").encode()
        target = TargetFile.from_data(DEPLOYED_TARGET, data, ["sha256"])
        _write(self.targets_dir / f"{target.hashes['sha256']}.{DEPLOYED_TARGET}", data)
        self._targets.signed.targets[DEPLOYED_TARGET] = target

    def add_bundle(self, bundle_path: str | Path, stage: str = "candidate", reason: str = "published",
                   parent: int | None = None) -> BundleInfo:
        """Publish a bundle (a ``.tar.gz``, or a folder, holding ``manifest.json`` and the model
        files) as the next version, in ``stage`` (candidate or approved). ``parent`` (default:
        the manifest's ``parent``) is the version it was trained from."""
        bundle_path = Path(bundle_path)
        if stage not in ("candidate", "approved"):
            raise RegistryError(f"{bundle_path}: a new bundle enters as candidate or approved, not {stage!r} "
                                f"(promote it afterwards)")
        with self._writing() as signers, tempfile.TemporaryDirectory(dir=self.folder, prefix=".stage-") as scratch:
            staged = _stage_bundle(bundle_path, Path(scratch))
            manifest = _read_manifest(staged / MANIFEST, bundle_path)
            bundles = self._bundle_targets()
            version = max(bundles, default=0) + 1
            parent = parent if parent is not None else manifest.get("parent")
            if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool)):
                raise RegistryError(f"{bundle_path}: parent must be a version number, got {parent!r}")
            if manifest.get("version") not in (None, version):
                log.info("%s: its manifest says version %s; the registry publishes it as %d",
                         bundle_path, manifest["version"], version)
            files = _model_files(staged, bundle_path)
            manifest.update(version=version, parent=parent, files=files)
            (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            record = {"version": version, "parent": parent, "stage": stage, "created": _iso(self.clock()),
                      "manifest": _summary(manifest), "files": files,
                      "history": [self._event(stage, reason, source=bundle_path.name)]}
            self._store(staged, version, record)
            self._publish(signers, f"published version {version} as {stage}")
        return self.show(version)

    def promote(self, version: int, to_stage: str, reason: str) -> BundleInfo:
        """Move ``version`` forward to ``to_stage``; deploying it retires the version deployed before."""
        if to_stage not in STAGES:
            raise RegistryError(f"{self.folder}: unknown stage {to_stage!r}; stages: {', '.join(STAGES)}")
        if not reason or not reason.strip():
            raise RegistryError(f"{self.folder}: moving version {version} to {to_stage} needs a reason")
        with self._writing() as signers:
            target = self._target(version)
            record = target.custom["odistill"]
            stage = record["stage"]
            if to_stage not in MOVES[stage]:
                why = ("retire it by deploying another version or by a rollback" if stage == "deployed"
                       and to_stage == "retired" else "stages only go forward: " + " -> ".join(STAGES))
                raise RegistryError(f"{self.folder}: version {version} is {stage}; "
                                    f"it cannot move to {to_stage} ({why})")
            if to_stage == "deployed":
                current = self.deployed()
                if current is not None:
                    self._move(self._target(current.version), "retired", f"replaced by version {version}: {reason}")
                self._point_to(version)
            self._move(target, to_stage, reason)
            self._publish(signers, f"version {version} {stage} -> {to_stage}")
        return self.show(version)

    def unpack(self, version: int, dest: str | Path) -> Path:
        """Unpack bundle ``version`` (its hash checked) into ``dest``, for the registry side's own
        checks (a promotion gate); returns ``dest``."""
        info = self.show(version)
        path = self.targets_dir / f"{info.sha256}.{info.target}"
        if not path.is_file() or _sha256(path) != info.sha256:
            raise RegistryError(f"{path}: bundle version {version} is missing or does not match its signed hash")
        safe_extract(path, dest)
        return Path(dest)

    def note(self, version: int, reason: str) -> BundleInfo:
        """Record a decision about ``version`` that moves nothing (a promotion gate's refusal)
        in its signed history."""
        if not reason or not reason.strip():
            raise RegistryError(f"{self.folder}: a note on version {version} needs a reason")
        with self._writing() as signers:
            record = self._target(version).custom["odistill"]
            record["history"].append(self._event(record["stage"], reason, note=True))
            self._publish(signers, f"version {version}: note")
        return self.show(version)

    def _move(self, target: TargetFile, stage: str, reason: str, **extra: Any) -> None:
        record = target.custom["odistill"]
        record["stage"] = stage
        record["history"].append(self._event(stage, reason, **extra))

    def _deployments(self) -> list[int]:
        """The deployment stack: each deploy pushes a version; a rollback pops the bad one and
        replaces the one below with the version that republishes its files."""
        events = sorted((event["at"], version, event) for version, target in self._bundle_targets().items()
                        for event in target.custom["odistill"]["history"]
                        if event["stage"] == "deployed" and not event.get("note"))
        stack: list[int] = []
        for _, version, event in events:
            if "rollback_of" in event:
                del stack[-2:]
            stack.append(version)
        return stack

    def rollback(self, reason: str) -> BundleInfo:
        """Roll the fleet back: publish the previously deployed model's files again as a new, higher
        version (parent: the rolled-back version), deployed; the rolled-back version is retired."""
        if not reason or not reason.strip():
            raise RegistryError(f"{self.folder}: a rollback needs a reason")
        with self._writing() as signers, tempfile.TemporaryDirectory(dir=self.folder, prefix=".stage-") as scratch:
            stack = self._deployments()
            if not stack:
                raise RegistryError(f"{self.folder}: nothing to roll back: no version is deployed")
            if len(stack) < 2:
                raise RegistryError(f"{self.folder}: nothing to roll back to: version {stack[-1]} is the only "
                                    f"deployment left on record")
            bad, good = stack[-1], stack[-2]
            old = self._target(good)
            stored = self.targets_dir / f"{old.hashes['sha256']}.{old.path}"
            if not stored.is_file() or _sha256(stored) != old.hashes["sha256"]:
                raise RegistryError(f"{stored}: version {good}'s bundle is missing or does not match its "
                                    f"signed sha256; cannot roll back to it")
            staged = Path(scratch) / "bundle"
            safe_extract(stored, staged)
            manifest = _read_manifest(staged / MANIFEST, stored)
            version = max(self._bundle_targets()) + 1
            manifest.update(version=version, parent=bad, republishes=good)
            (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            old_record = old.custom["odistill"]
            record = {"version": version, "parent": bad, "stage": "deployed", "created": _iso(self.clock()),
                      "manifest": _summary(manifest), "files": old_record.get("files", {}), "republishes": good,
                      "history": [self._event("deployed", f"rollback of version {bad} to the files of version "
                                              f"{good}: {reason}", rollback_of=bad, republishes=good)]}
            self._move(self._target(bad), "retired", f"rolled back (version {version} carries version {good}'s "
                                                      f"files): {reason}")
            self._store(staged, version, record)
            self._point_to(version)
            self._publish(signers, f"rolled back version {bad}: version {version} republishes version {good}")
        return self.show(version)

    def refresh(self, root: bool = False) -> None:
        """Re-sign targets, snapshot and timestamp with fresh expiry dates (run it more often than
        ``timestamp_days``, or vehicles refuse the registry as frozen). ``root=True`` also
        publishes the next root version with a fresh expiry (before ``root_days`` run out; it
        needs the root key): vehicles walk the chain from the root they hold."""
        with self._writing() as signers:
            if root:
                if "root" not in self._keys:
                    raise RegistryError(f"{self.folder}: renewing the root needs the root key's path")
                metadata = self._root
                metadata.signed.version += 1
                metadata.signed.expires = self.config.expiry("root", self.clock())
                metadata.signatures.clear()
                metadata.sign(_signer(self._keys["root"]))
                root_bytes = metadata.to_bytes()
                _write(self.metadata / f"{metadata.signed.version}.root.json", root_bytes)
                _write(self.metadata / "root.json", root_bytes)
                log.info("registry %s: root v%d until %s", self.folder, metadata.signed.version, metadata.signed.expires)
            self._publish(signers, "re-signed")


# -- bundles ------------------------------------------------------------------------------------

def _stage_bundle(source: Path, scratch: Path) -> Path:
    """Copy or unpack the bundle at ``source`` under ``scratch``; return the folder holding manifest.json."""
    staged = scratch / "bundle"
    if source.is_dir():
        for path in source.rglob("*"):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise RegistryError(f"{source}: {path.relative_to(source)} is not a regular file or folder")
        shutil.copytree(source, staged)
    elif source.is_file():
        safe_extract(source, staged)
    else:
        raise RegistryError(f"{source}: no such bundle (a .tar.gz or a folder holding {MANIFEST})")
    if not (staged / MANIFEST).is_file():
        entries = list(staged.iterdir())
        if len(entries) == 1 and (entries[0] / MANIFEST).is_file():
            return entries[0]  # the archive wraps the bundle in one folder
        raise RegistryError(f"{source}: no {MANIFEST} at the bundle's top level")
    return staged


def _read_manifest(path: Path, source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RegistryError(f"{source}: unreadable {MANIFEST} ({error})") from error
    if not isinstance(manifest, dict):
        raise RegistryError(f"{source}: {MANIFEST} must hold a JSON object, not {type(manifest).__name__}")
    return manifest


def _model_files(staged: Path, source: Path) -> dict[str, Any]:
    files = {path.relative_to(staged).as_posix(): {"length": path.stat().st_size, "sha256": _sha256(path)}
             for path in sorted(staged.rglob("*")) if path.is_file() and path.name != MANIFEST}
    if not files:
        raise RegistryError(f"{source}: no model file beside {MANIFEST}")
    return files


def _summary(manifest: Mapping[str, Any]) -> str:
    """The manifest's fields for list/show, each long value shortened to ``"<N entries>"``, as a JSON
    string (TUF's canonical JSON has no floats, and metrics are floats)."""
    out = {}
    for key, value in manifest.items():
        if key in REGISTRY_FIELDS:
            continue
        if isinstance(value, (dict, list)) and len(json.dumps(value)) > SUMMARY_LIMIT:
            value = f"<{len(value)} entries>"
        out[key] = value
    return json.dumps(out, sort_keys=True)


def _pack(folder: Path, out: Path) -> None:
    """Pack ``folder`` into the gzip tar ``out``, byte for byte the same for the same files."""
    with open(out, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = path.stat().st_size, 0o644
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)


def _member_path(tar_path: Path, member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's path inside the destination, or a RegistryError naming what is unsafe about it."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise RegistryError(f"{tar_path}: member {name!r} has an absolute path")
    if "\\" in name or "\x00" in name:
        raise RegistryError(f"{tar_path}: member {name!r} has a backslash or NUL in its name")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise RegistryError(f"{tar_path}: member {name!r} climbs out of the folder ('..')")
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise RegistryError(f"{tar_path}: member {name!r} is a {kind} link (to {member.linkname!r})")
    if member.ischr() or member.isblk() or member.isfifo():
        raise RegistryError(f"{tar_path}: member {name!r} is a device or fifo")
    if not (member.isfile() or member.isdir()):
        raise RegistryError(f"{tar_path}: member {name!r} is not a regular file or folder (type {member.type!r})")
    return path if path.parts else None  # "." (the archive's own top) has no path of its own


def safe_extract(tar_path: str | Path, dest: str | Path) -> list[str]:
    """Unpack the (gzip) tar ``tar_path`` into ``dest`` after checking every member: a member with
    an absolute path, ``..``, a link, a device or a fifo, or a name given twice, refuses the whole
    archive (a :class:`RegistryError` naming the member) before anything is written. Returns the
    files written, relative to ``dest``.

    Example:
        >>> import io, tarfile, tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> with tarfile.open(tmp / "evil.tar.gz", "w:gz") as tar:
        ...     info = tarfile.TarInfo("../outside.txt"); info.size = 2
        ...     tar.addfile(info, io.BytesIO(b"hi"))
        >>> safe_extract(tmp / "evil.tar.gz", tmp / "out")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stream.registry.RegistryError: .../evil.tar.gz: member '../outside.txt' climbs out of the folder ('..')
    """
    tar_path, dest = Path(tar_path), Path(dest)
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            checked: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
            seen: set[PurePosixPath] = set()
            for member in members:
                path = _member_path(tar_path, member)
                if path is None:
                    continue
                if path in seen:
                    raise RegistryError(f"{tar_path}: member {member.name!r} appears twice")
                seen.add(path)
                checked.append((member, path))
            dest.mkdir(parents=True, exist_ok=True)
            top = dest.resolve()
            written = []
            for member, path in checked:
                out = top.joinpath(*path.parts)
                if not out.parent.resolve().is_relative_to(top):
                    raise RegistryError(f"{tar_path}: member {member.name!r} would land outside {dest}")
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                with source, open(out, "wb") as handle:
                    shutil.copyfileobj(source, handle)
                written.append(path.as_posix())
            return written
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as error:
        raise RegistryError(f"{tar_path}: not a readable tar archive ({type(error).__name__}: {error})") from error


# -- the vehicle --------------------------------------------------------------------------------

class _FileFetcher(FetcherInterface):
    """ngclient downloads from ``file://`` URLs; a missing file answers as HTTP 404 would."""

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = Path(url2pathname(urlparse(url).path))
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise tuf_errors.DownloadHTTPError(f"{path}: not found", 404) from None
        return self._chunks(handle)

    @staticmethod
    def _chunks(handle: io.BufferedReader) -> Iterator[bytes]:
        with handle:
            yield from iter(lambda: handle.read(1 << 20), b"")


def _base_url(source: str | Path) -> tuple[str, FetcherInterface | None]:
    """The registry's base URL (ending in /) and the fetcher for it (None: ngclient's HTTP one)."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return text.rstrip("/") + "/", None
    if text.startswith("file://"):
        return text.rstrip("/") + "/", _FileFetcher()
    folder = Path(source).resolve()
    if not (folder / "metadata").is_dir():
        raise RegistryError(f"{source}: not a registry folder (no metadata/)")
    return folder.as_uri() + "/", _FileFetcher()


@contextlib.contextmanager
def _refusing(source: str | Path, step: str, holding: Deployed | None) -> Iterator[None]:
    """Turn whatever fails in ``step`` into a RegistryError naming the registry and the version kept."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as error:  # noqa: BLE001 -- any failure refuses the update; the vehicle keeps its version
        kept = f"keeping version {holding.version}" if holding else "no version on this vehicle yet"
        raise RegistryError(f"{source}: {step} refused ({type(error).__name__}: {error}); {kept}") from error


def _held_version(cache: Path) -> int | None:
    """The version ``current.json`` names, even when its bundle is damaged; None before the first fetch."""
    try:
        return int(json.loads((cache / "current.json").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def current_deployed(cache_dir: str | Path, verify: bool = True) -> Deployed | None:
    """The version this vehicle holds (``cache_dir/current.json``), or None before the first fetch.
    ``verify`` re-hashes its model files against the manifest."""
    cache = Path(cache_dir)
    pointer = cache / "current.json"
    if not pointer.is_file():
        return None
    try:
        current = json.loads(pointer.read_text())
        folder = cache / current["path"]
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError, KeyError) as error:
        raise RegistryError(f"{pointer}: the vehicle's current bundle is unreadable ({error})") from error
    if verify:
        _check_files(folder, manifest)
    return Deployed(int(current["version"]), folder, manifest)


def _check_files(folder: Path, manifest: Mapping[str, Any]) -> None:
    expected = manifest.get("files", {})
    present = {path.relative_to(folder).as_posix() for path in folder.rglob("*")
               if path.is_file() and path.name != MANIFEST}
    if present != set(expected):
        raise RegistryError(f"{folder}: files {sorted(present)} differ from the manifest's {sorted(expected)}")
    for name, meta in expected.items():
        if _sha256(folder / name) != meta["sha256"]:
            raise RegistryError(f"{folder / name}: sha256 differs from the manifest's")


def fetch_deployed(source: str | Path, trusted_root: str | Path, cache_dir: str | Path,
                   config: RegistryConfig | None = None) -> Deployed:
    """Bring this vehicle to the fleet's deployed bundle and return it.

    ``source`` is the registry: a folder, a ``file://`` URL or an ``http(s)://`` URL of the folder
    that holds ``metadata/`` and ``targets/``. ``trusted_root`` is the root metadata the vehicle
    was provisioned with. ``cache_dir`` keeps the verified metadata (rollback protection across
    runs), the unpacked bundles (``bundles/V/``) and ``current.json``. Anything refused raises a
    :class:`RegistryError` and leaves the current version in place.
    """
    config = config or RegistryConfig()
    cache = Path(cache_dir)
    floor = _held_version(cache)  # never go below it, even when its files are damaged
    try:
        holding = current_deployed(cache, verify=False)
    except RegistryError as error:  # a damaged bundle on disk: fetch the deployed one again
        log.warning("%s; fetching the deployed bundle again", error)
        holding = None
    base, fetcher = _base_url(source)
    try:
        bootstrap = Path(trusted_root).read_bytes()
    except OSError as error:
        raise RegistryError(f"{trusted_root}: cannot read the trusted root ({error.strerror or error})") from error
    downloads = cache / "downloads"
    for folder in (cache / "tuf", downloads, cache / "bundles"):
        folder.mkdir(parents=True, exist_ok=True)
    with _refusing(source, "the metadata", holding):
        updater = Updater(str(cache / "tuf"), base + "metadata/", str(downloads), base + "targets/",
                          fetcher=fetcher, bootstrap=bootstrap)
        updater.refresh()
        pointer_info = updater.get_targetinfo(DEPLOYED_TARGET)
        if pointer_info is None:
            raise RegistryError(f"{source}: no version is deployed")
        pointer = json.loads(Path(updater.download_target(pointer_info, str(downloads / DEPLOYED_TARGET))).read_text())
        version, target_path = int(pointer["version"]), str(pointer["target"])
        if target_path != f"bundle-{version}.tar.gz":  # a target name becomes a local file name: no other shape
            raise RegistryError(f"{source}: deployed.json names target {target_path!r} for version {version}; "
                                f"expected 'bundle-{version}.tar.gz'")
        info = updater.get_targetinfo(target_path)
        record = ((info.custom or {}) if info is not None else {}).get("odistill", {})
        if info is None or record.get("version") != version or record.get("stage") != "deployed":
            raise RegistryError(f"{source}: deployed.json names version {version} ({target_path}), but the signed "
                                f"targets list it as {record.get('stage', 'absent')}")
    if holding is not None:
        if version == holding.version:
            try:
                _check_files(holding.path, holding.manifest)
                log.info("%s: version %d is deployed; this vehicle has it", source, version)
                return holding
            except RegistryError as error:
                log.warning("%s; fetching version %d again", error, version)
    if floor is not None and version < floor:
        raise RegistryError(f"{source}: the deployed version {version} is older than version {floor} this vehicle "
                            f"holds; keeping version {floor}")
    if holding is not None:
        if version < holding.version:
            raise RegistryError(f"{source}: the deployed version {version} is older than version "
                                f"{holding.version} this vehicle holds; keeping version {holding.version}")
    with _refusing(source, f"version {version}'s bundle", holding):
        local = downloads / target_path
        if updater.find_cached_target(info, str(local)) is None:
            updater.download_target(info, str(local))
    unpacked = cache / "bundles" / f".unpack-{version}"
    shutil.rmtree(unpacked, ignore_errors=True)
    try:
        safe_extract(local, unpacked)
        manifest = _read_manifest(unpacked / MANIFEST, local)
        if manifest.get("version") != version:
            raise RegistryError(f"{local}: its manifest says version {manifest.get('version')}, the metadata {version}")
        _check_files(unpacked, manifest)
    except RegistryError:
        shutil.rmtree(unpacked, ignore_errors=True)
        raise
    final = cache / "bundles" / str(version)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(unpacked, final)
    _write(cache / "current.json", (json.dumps({"version": version, "path": f"bundles/{version}",
                                                "target": target_path, "sha256": info.hashes["sha256"],
                                                "fetched": _iso(_now())}, sort_keys=True) + "\n").encode())
    _prune(cache, version, config.keep_versions)
    log.info("%s: now running version %d (was %s)", source, version, holding.version if holding else "none")
    return Deployed(version, final, manifest)


def _prune(cache: Path, current: int, keep: int) -> None:
    """Keep the ``keep`` newest unpacked bundles (the current one always) and the current download."""
    versions = sorted((int(p.name) for p in (cache / "bundles").iterdir() if p.name.isdigit()), reverse=True)
    kept = set([current] + [v for v in versions if v != current][:keep - 1])
    for version in versions:
        if version not in kept:
            shutil.rmtree(cache / "bundles" / str(version), ignore_errors=True)
    for download in (cache / "downloads").glob("bundle-*.tar.gz"):
        if download.name != f"bundle-{current}.tar.gz":
            download.unlink(missing_ok=True)
