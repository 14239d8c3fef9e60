"""Where a path lives: the local disk, or an object store named by a URI (``s3://``, ``gs://``, ``abfs://``, or any
scheme fsspec knows), resolved into a filesystem and a path inside it, and the few operations streamgd needs there.

Credentials and the endpoint come from the standard environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...) and from
*storage options*, ``KEY=VALUE`` settings of the filesystem (``--storage-option`` on the command line,
``storage_options=`` in Python), such as ``endpoint_override``, ``region`` or ``retries``. One filesystem object
is made per scheme and settings, and reused.

Writes to an object store are whole objects: the file is written locally first, then uploaded; the store makes
the object visible only once the upload completes, so a reader never sees half of one (pyarrow 26 uploads even a
small object as a one-part multipart upload, completed on close; measured against moto 5.2). S3 requests that
fail transiently are retried with backoff, ``retries`` attempts in all (default 10, against pyarrow's 3).

>>> resolve("data/train.parquet").is_local, resolve("file:///tmp/m.safetensors").path
(True, '/tmp/m.safetensors')
>>> resolve("s3://bucket/train/", {"endpoint_override": "http://127.0.0.1:9000", "retries": "5"}).path
'bucket/train'
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import ConfigError, StorageError
from .atomic import atomic_write

DEFAULT_S3_RETRIES = 10  # attempts per request; pyarrow's default, 3, is short for some S3-compatible services
# the standard strategy's backoff grows to 20 s a wait: 3 attempts give up after ~1.4 s, 10 after ~74 s (measured
# against a closed port); against a server that keeps failing, the SDK makes max_attempts attempts or one fewer
QUICK_S3_RETRIES = 3
DEFAULT_GCS_RETRY_SECONDS = 60.0
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_UPLOAD_BLOCK = 8 << 20


@dataclass(frozen=True)
class Location:
    """A path as the user wrote it (``uri``), and where it is: ``path`` inside ``filesystem`` (None: the local
    disk, and ``path`` is an OS path)."""

    uri: str
    path: str
    filesystem: Any = None

    @property
    def is_local(self) -> bool:
        return self.filesystem is None

    def join(self, name: str) -> Location:
        """The location of ``name`` inside this one (a directory or a prefix)."""
        if self.is_local:
            return Location(os.path.join(self.uri, name), os.path.join(self.path, name))
        return Location(self.uri.rstrip("/") + "/" + name, self.path.rstrip("/") + "/" + name, self.filesystem)

    def __str__(self) -> str:
        return self.uri


def scheme_of(path: Any) -> str | None:
    """The URI scheme of ``path`` in lower case (``"s3"``), or None for a plain local path."""
    if not isinstance(path, str):
        return None
    match = _SCHEME.match(path)
    return match.group("scheme").lower() if match else None


def is_remote(where: Any) -> bool:
    """Whether ``where`` lies outside the local disk: a URI of another scheme than ``file://``, a ``Location`` in
    a store, or a filesystem other than pyarrow's local one (a path, ``None`` or a local filesystem: False).

    >>> is_remote("s3://bucket/key"), is_remote("file:///data/a.parquet"), is_remote(pafs.LocalFileSystem()), is_remote(None)
    (True, False, False, False)
    """
    if isinstance(where, Location):
        return not where.is_local
    if where is None or isinstance(where, (str, os.PathLike)):
        return scheme_of(where) not in (None, "file")
    return not isinstance(where, pafs.LocalFileSystem)  # a filesystem: pyarrow's S3, GCS, fsspec's ...


def parse_storage_options(pairs: Any) -> dict[str, str]:
    """``("KEY=VALUE", ...)`` from the command line as a dict; ConfigError for a pair without ``=``."""
    options: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--storage-option {pair!r}: expected KEY=VALUE, for example "
                              "endpoint_override=http://127.0.0.1:9000")
        options[key.strip()] = value
    return options


def resolve(path: str | os.PathLike | Location, storage_options: Mapping[str, Any] | None = None) -> Location:
    """Where ``path`` is: a local path (``file://`` stripped) or an object in a store, with its filesystem made
    from the environment and ``storage_options``. ConfigError for a scheme nothing here can open or a bad option."""
    if isinstance(path, Location):
        return path
    text = os.fspath(path)
    scheme = scheme_of(text)
    if scheme is None:
        return Location(text, text)
    if scheme == "file":
        return Location(text, text[len("file://"):])
    options = dict(storage_options or {})
    if scheme in ("s3", "s3a"):
        return Location(text, _strip(text), _cached(("s3", _frozen(options), _aws_environment()),
                                                    lambda: s3_filesystem(options)))
    if scheme in ("gs", "gcs"):
        return Location(text, _strip(text), _cached(("gs", _frozen(options)), lambda: gcs_filesystem(options)))
    if scheme in ("abfs", "abfss", "hdfs", "viewfs") and not options:
        try:
            filesystem, inner = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise StorageError(f"cannot open {text}: {first_line(exc)}") from None
        return Location(text, inner, filesystem)
    return Location(text, _strip(text), _cached((scheme, _frozen(options)), lambda: _fsspec(scheme, options, text)))


def s3_filesystem(options: Mapping[str, Any]) -> pafs.S3FileSystem:
    """An S3FileSystem from the environment and ``options`` (S3FileSystem's own arguments, a few s3fs/boto names
    such as ``endpoint_url`` or ``key``, and ``retries``: attempts per request)."""
    settings: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:  # S3FileSystem() itself reads neither (only FileSystem.from_uri reads AWS_ENDPOINT_URL)
        settings["endpoint_override"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        settings["region"] = region
    retries = DEFAULT_S3_RETRIES
    for key, value in options.items():
        name = _S3_ALIASES.get(key, key)
        if name == "retries":
            retries = _convert("retries", value, int)
            if retries < 1:
                raise ConfigError(f"storage option retries={value!r}: expected a number of attempts, at least 1")
            continue
        if name not in _S3_TYPES:
            raise ConfigError(f"unknown storage option {key!r} for s3://; expected one of "
                              + ", ".join(sorted({*_S3_TYPES, "retries"})))
        settings[name] = _convert(key, value, _S3_TYPES[name])
    try:
        return RetryingS3FileSystem(settings, retries)
    except (TypeError, ValueError, pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"cannot set up s3:// with these storage options: {first_line(exc)}") from None


class RetryingS3FileSystem(pafs.S3FileSystem):
    """An S3FileSystem that keeps its retry strategy when pickled (to dask workers): pyarrow's own pickles
    every setting but that one, and a worker's reads would fall back to 3 attempts. Credentials travel only when
    given as settings; from the environment, each worker takes its own (as an EC2 role would give it)."""

    def __init__(self, settings: dict[str, Any], retries: int = DEFAULT_S3_RETRIES):
        super().__init__(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=retries), **settings)
        self.settings, self.retries = settings, retries

    def __reduce__(self) -> tuple:
        return RetryingS3FileSystem, (self.settings, self.retries)


_S3_TYPES: dict[str, type] = {
    "access_key": str, "secret_key": str, "session_token": str, "anonymous": bool, "region": str,
    "request_timeout": float, "connect_timeout": float, "scheme": str, "endpoint_override": str,
    "background_writes": bool, "role_arn": str, "session_name": str, "external_id": str, "load_frequency": int,
    "proxy_options": str, "allow_bucket_creation": bool, "allow_bucket_deletion": bool,
    "force_virtual_addressing": bool, "tls_ca_file_path": str,
}
_S3_ALIASES = {"endpoint_url": "endpoint_override", "key": "access_key", "aws_access_key_id": "access_key",
               "secret": "secret_key", "aws_secret_access_key": "secret_key", "token": "session_token",
               "aws_session_token": "session_token", "region_name": "region", "max_attempts": "retries"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _convert(key: str, value: Any, kind: type) -> Any:
    if not isinstance(value, str):
        return value
    if kind is bool:
        if value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"storage option {key}={value!r}: expected true or false")
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"storage option {key}={value!r}: expected {'a number' if kind is not str else 'text'}"
                          ) from None


def _aws_environment() -> tuple:
    """The environment an S3FileSystem is made from (so a changed environment makes a new one)."""
    names = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
    return tuple(os.environ.get(name) for name in names)


def gcs_filesystem(options: Mapping[str, Any], retry_seconds: float = DEFAULT_GCS_RETRY_SECONDS
                   ) -> pafs.GcsFileSystem:
    """A GcsFileSystem from the environment and ``options`` (GcsFileSystem's own arguments; ``retry_time_limit``
    in seconds, default 60 instead of pyarrow's 15 minutes, which is how long a missing credential would hang)."""
    settings = dict(options)
    seconds = _convert("retry_time_limit", settings.pop("retry_time_limit", retry_seconds), float)
    for key in ("anonymous",):
        if key in settings:
            settings[key] = _convert(key, settings[key], bool)
    try:
        return pafs.GcsFileSystem(retry_time_limit=timedelta(seconds=seconds), **settings)
    except (TypeError, ValueError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"cannot set up gs:// with these storage options: {first_line(exc)}") from None


def quick(location: Location) -> Location:
    """The same location through a filesystem that gives up sooner (S3: 3 attempts): for the checks before a
    run, where a wrong endpoint, bucket or credential should cost a second, not the minute of backoff that the
    run's own reads are allowed to survive."""
    filesystem = location.filesystem
    if isinstance(filesystem, RetryingS3FileSystem) and filesystem.retries > QUICK_S3_RETRIES:
        key = ("s3-quick", _frozen(filesystem.settings), _aws_environment())
        filesystem = _cached(key, lambda: RetryingS3FileSystem(filesystem.settings, QUICK_S3_RETRIES))
    return Location(location.uri, location.path, filesystem)


def _fsspec(scheme: str, options: dict, text: str) -> pafs.PyFileSystem:
    """A filesystem pyarrow has no native one for, through fsspec (``memory://``, ``https://``, ``sftp://`` ...)."""
    try:
        import fsspec
        from fsspec.registry import known_implementations, registry
    except ImportError:  # pragma: no cover - fsspec comes with dask
        fsspec = None
    if fsspec is None or (scheme not in known_implementations and scheme not in registry):
        raise ConfigError(f"{text}: unknown scheme {scheme}://; give a local path or a URI with s3://, gs://, "
                          "abfs://, file:// (or a scheme fsspec knows)")
    try:
        return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme, **options)))
    except ImportError as exc:
        raise ConfigError(f"{text}: {scheme}:// needs a package that is not installed ({exc})") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot open {text} with these storage options: {first_line(exc)}") from None


_FILESYSTEMS: dict[tuple, Any] = {}
_FILESYSTEMS_LOCK = threading.Lock()


@atexit.register
def _forget_filesystems() -> None:
    """Drop the cached filesystems before pyarrow's own exit hook finalizes S3 (``ensure_s3_finalized``, registered
    when ``pyarrow.fs`` was imported, so run after this one): an S3 client destroyed after the finalization is the
    crash at shutdown that ``pyarrow.fs.finalize_s3`` warns of."""
    with _FILESYSTEMS_LOCK:
        _FILESYSTEMS.clear()


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    with _FILESYSTEMS_LOCK:
        if key not in _FILESYSTEMS:
            _FILESYSTEMS[key] = make()
        return _FILESYSTEMS[key]


def _frozen(options: Mapping[str, Any]) -> tuple:
    return tuple(sorted((key, str(value)) for key, value in options.items()))


def _strip(text: str) -> str:
    """``scheme://bucket/key/`` -> ``bucket/key``."""
    return text.split("://", 1)[1].rstrip("/")


def uri_of(filesystem: Any, path: str) -> str:
    """The URI of ``path`` inside ``filesystem`` (the path itself on the local disk)."""
    if filesystem is None or isinstance(filesystem, pafs.LocalFileSystem):
        return path
    name = filesystem.type_name
    scheme = {"gcs": "gs"}.get(name, name.split("+")[-1])
    return f"{scheme}://{path.lstrip('/')}"


# ---- errors -----------------------------------------------------------------------------------------------------
def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when empty): pyarrow's and the SDKs' errors run
    to many lines, and an error a user can fix is said on one."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_REASONS = (
    (("INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "InvalidAccessKeyId", "SignatureDoesNotMatch"),
     "the credentials are not valid (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or --storage-option)"),
    (("ACCESS_DENIED", "HTTP status 403", "AccessDenied"),
     "access denied (check the credentials and the permissions on the bucket)"),
    (("NO_SUCH_BUCKET", "NoSuchBucket"), "the bucket does not exist"),
    (("HTTP status 5", "SLOW_DOWN", "SERVICE_UNAVAILABLE", "INTERNAL_FAILURE", "NETWORK_CONNECTION",
      "REQUEST_TIMEOUT", "THROTTLING", "curlCode"), "the store kept failing, retries exhausted"),
)
_REFUSALS = ("ACCESS_DENIED", "HTTP status 403", "AccessDenied")  # a 403, whatever its body says (HEAD: none)


def storage_error(exc: BaseException, doing: str, uri: str) -> StorageError:
    """One line for a failed request: what was being done to which object, why, and the store's own words."""
    return StorageError(f"cannot {doing} {uri}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = first_line(exc)
    reason = next((why for codes, why in _REASONS if any(code in text for code in codes)), None)
    return f"{reason} ({text})" if reason else text


def is_store_error(exc: BaseException) -> bool:
    """True for an error an object store's client raised (as opposed to a bad file)."""
    return isinstance(exc, OSError) and any(mark in str(exc) for mark in ("AWS Error", "curlCode", "HTTP status",
                                                                          "google::cloud", "Azure"))


# ---- operations -------------------------------------------------------------------------------------------------
def file_type(location: Location) -> pafs.FileType:
    """NotFound, File or Directory (a prefix with objects under it). A refused HeadObject is asked again as a
    listing (see ``refused``); StorageError, one line naming what was refused, when neither answers."""
    if location.is_local:
        return pafs.LocalFileSystem().get_file_info(os.path.abspath(location.path)).type
    try:
        return location.filesystem.get_file_info(location.path).type
    except OSError as exc:
        if not refused(exc):
            raise storage_error(exc, "read", location.uri) from None
        objects_after_refusal(location, exc, recursive=False)
        return pafs.FileType.Directory


def file_or_prefix(location: Location) -> tuple[pafs.FileType, list[pafs.FileInfo]]:
    """What a remote ``location`` names: ``(File, [])``, ``(Directory, every entry under it, recursively)`` or
    ``(NotFound, [])``, in one listing at most. StorageError as ``file_type``."""
    filesystem = location.filesystem
    try:
        kind = filesystem.get_file_info(location.path).type
        if kind != pafs.FileType.Directory:
            return kind, []
    except OSError as exc:
        if not refused(exc):
            raise storage_error(exc, "read", location.uri) from None
        return pafs.FileType.Directory, objects_after_refusal(location, exc, recursive=True)
    try:
        return kind, filesystem.get_file_info(pafs.FileSelector(location.path, recursive=True))
    except OSError as exc:
        raise storage_error(exc, "list", location.uri) from None


def refused(exc: BaseException) -> bool:
    """True for a 403 from the store. S3 answers it to a HeadObject of a key the caller may not read (a policy
    on ``prefix/*`` refuses the key ``prefix`` itself) and of any missing key when the caller may not list the
    bucket: so a refused probe of a path as one object does not say that it is not a prefix."""
    return is_store_error(exc) and any(code in str(exc) for code in _REFUSALS)


def objects_after_refusal(location: Location, refusal: OSError, recursive: bool) -> list[pafs.FileInfo]:
    """The entries under the prefix ``location.path/`` of a path whose HeadObject was refused (``refusal``).
    StorageError, one line, when the listing is refused too (the listing's reason: for a key that is not valid,
    the HeadObject's bodiless 403 cannot say so) or is empty (the HeadObject's refusal stands: an object these
    credentials may not read, or nothing there)."""
    selector = pafs.FileSelector(location.path, allow_not_found=True, recursive=recursive)
    try:
        entries = location.filesystem.get_file_info(selector)
    except OSError as exc:
        raise StorageError(f"cannot read {location.uri} as an object or list it as a prefix: {_reason(exc)}"
                           ) from None
    if not entries:
        raise StorageError(f"cannot read {location.uri}: {_reason(refusal)}; and no object is under it as a prefix")
    return entries


def write_object(location: Location, write: Callable[[str], None]) -> None:
    """Call ``write(local_path)`` to produce the file, then put it at ``location`` whole: an atomic rename on the
    local disk, one upload to an object store (visible only once complete)."""
    if location.is_local:
        atomic_write(location.path, write)
        return
    with _local_temporary(location) as temporary:
        write(temporary)
        upload(temporary, location)


def upload(local_path: str, location: Location) -> None:
    """Copy a finished local file to ``location`` in one upload; StorageError naming the object on failure."""
    try:
        with open(local_path, "rb") as source, location.filesystem.open_output_stream(location.path) as target:
            while block := source.read(_UPLOAD_BLOCK):
                target.write(block)
    except OSError as exc:
        raise storage_error(exc, "write", location.uri) from None


@contextlib.contextmanager
def local_copy(location: Location, what: str = "file") -> Iterator[str]:
    """A local path holding the file at ``location``: the path itself on the local disk, else a downloaded
    temporary copy, deleted on exit. FileNotFoundError if there is no such object."""
    if location.is_local:
        yield location.path
        return
    if file_type(location) != pafs.FileType.File:
        raise FileNotFoundError(f"no such {what}: {location.uri}")
    with _local_temporary(location) as temporary:
        try:
            with location.filesystem.open_input_stream(location.path) as source, open(temporary, "wb") as target:
                while block := source.read(_UPLOAD_BLOCK):
                    target.write(block)
        except OSError as exc:
            raise storage_error(exc, "read", location.uri) from None
        yield temporary


@contextlib.contextmanager
def _local_temporary(location: Location) -> Iterator[str]:
    handle, temporary = tempfile.mkstemp(prefix=".streamgd-", suffix="-" + os.path.basename(location.path))
    os.close(handle)
    try:
        yield temporary
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def list_names(location: Location) -> list[str]:
    """The names of the files directly inside a directory (an object store: under the prefix ``path/``)."""
    if location.is_local:
        if not os.path.isdir(location.path):
            return []
        return [entry.name for entry in os.scandir(location.path) if entry.is_file()]
    selector = pafs.FileSelector(location.path, allow_not_found=True, recursive=False)
    try:
        infos = location.filesystem.get_file_info(selector)
    except OSError as exc:
        raise storage_error(exc, "list", location.uri) from None
    return [info.base_name for info in infos if info.type == pafs.FileType.File]


def delete(location: Location) -> None:
    """Delete one file (nothing if it is gone already)."""
    if location.is_local:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(location.path)
        return
    try:
        location.filesystem.delete_file(location.path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise storage_error(exc, "delete", location.uri) from None


def make_directory(location: Location) -> None:
    if location.is_local:
        os.makedirs(location.path, exist_ok=True)
    # an object store has no directories: a prefix exists once an object is under it


def check_writable(location: Location, what: str, directory: bool = False) -> None:
    """Before any work: the bucket exists, the credentials hold, and an object can be put there (a probe object
    is written and deleted); for a file, the name is not a prefix holding objects. ConfigError or StorageError,
    one line naming ``what``."""
    location = quick(location)
    bucket = location.path.split("/", 1)[0]
    if not bucket:
        raise ConfigError(f"{what} {location.uri}: name a bucket and a key")

    def kind(path: str) -> pafs.FileType:
        try:
            return location.filesystem.get_file_info(path).type
        except OSError as exc:
            raise StorageError(f"{what} {location.uri}: cannot reach it: {_reason(exc)}") from None

    def is_prefix() -> bool:
        try:
            return location.filesystem.get_file_info(location.path).type == pafs.FileType.Directory
        except OSError as exc:
            if not refused(exc):
                raise StorageError(f"{what} {location.uri}: cannot reach it: {_reason(exc)}") from None
        # a writer may be refused the HeadObject (S3 asks s3:GetObject for it): a listing says whether objects
        # are under the name; one that may not list either is left to the probe write below
        try:
            return bool(location.filesystem.get_file_info(pafs.FileSelector(location.path, allow_not_found=True)))
        except OSError:
            return False

    if kind(bucket) == pafs.FileType.NotFound:
        raise StorageError(f"{what} {location.uri}: the bucket {bucket!r} does not exist (or these credentials "
                           "cannot see it)")
    if not directory:
        if "/" not in location.path:
            raise ConfigError(f"{what} {location.uri} is not a file name; give bucket/key")
        if is_prefix():
            raise ConfigError(f"{what} {location.uri} is a prefix holding objects; give a file name")
    parent = location.path if directory else location.path.rsplit("/", 1)[0]
    probe = Location(location.uri, f"{parent}/.streamgd-probe-{uuid.uuid4().hex}", location.filesystem)
    try:
        with probe.filesystem.open_output_stream(probe.path) as stream:
            stream.write(b"")
        probe.filesystem.delete_file(probe.path)
    except OSError as exc:
        raise StorageError(f"{what} {location.uri}: cannot write there: {_reason(exc)}") from None
