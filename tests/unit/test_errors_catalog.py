"""The error catalog: unique stable codes, well-formed entries, and a published table that
matches the code (`docs/errors.md`, regenerated with `make docs`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from braid import errors
from braid.cli.main import main
from braid.errors import BraidError, ErrorInfo, catalog, lookup, render_markdown

DOCS_ERRORS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
NAME_PATTERN = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")
RANGES = {
    1: "invalid input",
    2: "document state",
    3: "storage",
    4: "network and protocol",
    9: "internal",
}


def test_codes_and_names_are_unique() -> None:
    """No two entries share a code or a name."""
    entries = catalog()
    assert len({info.code for info in entries}) == len(entries)
    assert len({info.name for info in entries}) == len(entries)


def test_catalog_is_ordered_and_lookup_agrees() -> None:
    """catalog() is sorted by code and lookup(code) returns that very entry."""
    entries = catalog()
    assert [info.code for info in entries] == sorted(info.code for info in entries)
    for info in entries:
        assert lookup(info.code) is info
    assert lookup(999_999) is None


@pytest.mark.parametrize("info", catalog(), ids=lambda info: info.name)
def test_every_entry_is_well_formed(info: ErrorInfo) -> None:
    """Code in a documented range, UPPER_SNAKE name, a one-line sentence as description, bools,
    and a module constant of the same name bound to the entry."""
    assert isinstance(info.code, int)
    assert 1000 <= info.code <= 9999
    assert info.code // 1000 in RANGES
    assert NAME_PATTERN.fullmatch(info.name)
    assert info.description.strip() == info.description
    assert len(info.description) >= 20
    assert info.description.endswith(".")
    assert "\n" not in info.description
    assert type(info.retryable) is bool
    assert type(info.user_fixable) is bool
    assert getattr(errors, info.name) is info


def test_braid_error_carries_its_entry() -> None:
    """A BraidError exposes its entry's code, name and flags, and its message names the code."""
    error = BraidError(errors.DISK_FULL, "no room for 7 bytes")
    assert (error.code, error.name, error.retryable, error.user_fixable) == (
        3008,
        "DISK_FULL",
        True,
        False,
    )
    assert str(error) == "[3008 DISK_FULL] no room for 7 bytes"


def test_docs_errors_md_is_current() -> None:
    """docs/errors.md is exactly what `braid errors --markdown` prints now."""
    assert DOCS_ERRORS.read_text(encoding="utf-8") == render_markdown(), (
        "docs/errors.md is stale: run `make docs`"
    )


def test_a_catalog_change_makes_the_doc_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above has teeth: adding an entry changes the rendered table."""
    extra = ErrorInfo(9999, "TEST_ONLY", "An entry added by this test.", False, False)
    monkeypatch.setitem(errors._CATALOG, extra.code, extra)
    rendered = render_markdown()
    assert rendered != DOCS_ERRORS.read_text(encoding="utf-8")
    assert "| 9999 | `TEST_ONLY` | no | no | An entry added by this test. |" in rendered


def test_markdown_has_one_row_per_entry() -> None:
    """The table lists every entry once, with escaped pipes."""
    rows = [line for line in render_markdown().splitlines() if re.match(r"\| \d{4} \|", line)]
    assert [int(row.split("|")[1]) for row in rows] == [info.code for info in catalog()]


@pytest.mark.parametrize("info", catalog(), ids=lambda info: info.name)
def test_the_cli_explains_every_code(info: ErrorInfo, capsys: pytest.CaptureFixture[str]) -> None:
    """`braid errors CODE` prints the name, the description and both flags."""
    assert main(["errors", str(info.code)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{info.code} {info.name}\n")
    assert info.description in out
    assert f"retryable: {'yes' if info.retryable else 'no'}" in out
    assert f"user can fix: {'yes' if info.user_fixable else 'no'}" in out


def test_the_cli_prints_the_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    """`braid errors --markdown` (what `make docs` runs) prints render_markdown() verbatim."""
    assert main(["errors", "--markdown"]) == 0
    assert capsys.readouterr().out == render_markdown()


# -- every raise site's code was reviewed against its description ---------------------------

SOURCE = Path(__file__).resolve().parents[2] / "src" / "braid"

# Where each code is raised (or answered, or sent), as "module path:function", grouped by
# code. Each group was read against the code's description in errors.py: the description
# fits every site listed. A site not listed fails `test_every_raise_site_was_reviewed`;
# review the description against it (split the code if no one description can fit), then
# add it here. A listed site that no longer exists fails too, so the table stays true.
REVIEWED_RAISE_SITES: dict[str, tuple[str, ...]] = {
    "INVALID_SPACE": ("model.py:validate_space",),
    "INVALID_KEY": (
        "client.py:Client._call",
        "model.py:validate_key",
        "storage/router.py:Store._engine",
    ),
    "MALFORMED_JSON": (
        "client.py:check_encodable",
        "core/document.py:check_snapshot_arguments",
        "model.py:check_depth",
        "model.py:parse_object",
    ),
    "INVALID_UPDATE": (
        "model.py:_check_encodable",
        "model.py:_patch_text",
        "model.py:_validate_update_fields",
        "model.py:validate_update",
    ),
    "UPDATES_NOT_CONTIGUOUS": ("core/document.py:check_updates",),
    "EMPTY_PATCH": ("core/document.py:check_updates",),
    "INVALID_ARGUMENT": (
        "core/document.py:DocumentLog.compute",
        "core/document.py:check_compute_arguments",
        "core/document.py:check_seq_argument",
        "core/document.py:check_snapshot_arguments",
        "core/document.py:check_updates",
    ),
    "RECORD_TOO_LARGE": (
        "client.py:Client._check_frame",
        "core/wal/batcher.py:Batcher.append",
    ),
    "INVALID_SETTING": (
        "cli/common.py:JsonErrorParser.error",
        "cli/common.py:_client_tls",
        "cli/common.py:resolve_target",
        "cli/common.py:run_on_target",
        "cli/doc.py:_seqs",
        "cli/doc.py:read_patches",
        "cli/secret.py:handle",
        "cli/secret.py:load_secret",
        "cli/serve.py:_run",
        "cli/serve.py:check_bounds",
        "cli/serve.py:check_buffering",
        "cli/serve.py:handle",
        "cli/serve.py:tls_context",
        "cli/status.py:handle",
        "cli/transfer.py:_export",
        "cli/transfer.py:_export.action",
        "cli/transfer.py:_import",
        "client.py:StaticLocator.__init__",
        "client.py:check_secret",
        "client.py:connect",
        "client.py:parse_address",
        "membership.py:_invalid",
    ),
    "IMPORT_FILE_INVALID": ("cli/transfer.py:ImportFile.invalid",),
    "DOCUMENT_NOT_FOUND": (
        "core/partition.py:Partition._applied",
        "core/partition.py:Partition.plan_snapshot",
        "core/partition.py:_check_state",
        "storage/documents.py:Documents.patch",
        "storage/documents.py:Documents.readable",
        "storage/documents.py:Documents._replay",
        "storage/documents.py:Documents.delete",
        "storage/memory.py:MemoryEngine._document",
    ),
    "DOCUMENT_EXISTS": (
        "cli/transfer.py:_run_import.action",
        "core/document.py:DocumentLog.refuse_initialize_existing",
    ),
    "HEAD_SEQ_OFF": (
        "bench/engine.py:SqliteGroupCommit.patch",
        "cli/doc.py:_patch",
        "core/document.py:DocumentLog.check_patch",
    ),
    "REWIND_PAST_COMPACTED": ("core/document.py:DocumentLog._rewind",),
    "SNAPSHOT_SEQ_INVALID": ("core/document.py:DocumentLog.plan_fold",),
    "SNAPSHOT_MISMATCH": (
        "core/document.py:DocumentLog.plan_fold",
        "core/partition.py:_check_fold",
    ),
    "HEAD_PATCH_PAST_COMPACTED": ("core/document.py:DocumentLog._head_patch",),
    "SEQ_BEYOND_HEAD": (
        "core/document.py:DocumentLog.compute",
        "core/document.py:DocumentLog.plan_fold",
        "core/document.py:check_seq_in_range",
    ),
    "DOCUMENT_TOO_LARGE": ("core/document.py:_too_large",),
    "WAL_CORRUPT": (
        "cli/wal.py:log_verdict_text",
        "storage/documents.py:Documents._unappliable",
        "storage/scan.py:judge",
    ),
    "WAL_FAILED": (
        "core/wal/batcher.py:Batcher.barrier",
        "core/wal/batcher.py:Batcher.check",
        "storage/wal.py:WalWriter._fail",
    ),
    "STORE_LOCKED": (
        "cli/common.py:_read_through_node",
        "storage/durable.py:_lock_directory",
    ),
    "STORE_FORMAT": ("storage/applied.py:AppliedState._check_format",),
    "STORE_CLOSED": (
        "client.py:Client._call",
        "core/wal/batcher.py:Batcher.check",
        "storage/durable.py:DurableEngine._check_readable",
        "storage/memory.py:MemoryEngine._document",
        "storage/memory.py:MemoryEngine.initialize",
        "sync.py:_Sync._run",
    ),
    "STORE_NOT_FOUND": (
        "cli/wal.py:wal_directory",
        "storage/durable.py:DurableEngine._open",
        "storage/scan.py:refuse_foreign_directory",
    ),
    "DISK_FULL": (
        "core/wal/batcher.py:Batcher.check",
        "sim/applied.py:MemoryApplied.checkpoint",
        "storage/wal.py:WalWriter._rolled_back",
        "storage/logfiles.py:access_error",
    ),
    "STORE_ACCESS": (
        "storage/scan.py:_check_spare",
        "storage/scan.py:_exists_as",
        "storage/logfiles.py:access_error",
    ),
    "APPLIED_STATE_CORRUPT": (
        "cli/verify.py:Verdict.as_json",
        "storage/applied.py:AppliedState._check_format",
        "storage/applied.py:AppliedState._joined",
        "storage/applied.py:AppliedState._load",
        "storage/applied.py:AppliedState.applied_lsn",
        "storage/applied.py:AppliedState.inventory",
    ),
    "STORE_READ_ONLY": ("storage/durable.py:DurableEngine._writable_wal",),
    "WRITE_NOT_DURABLE": (
        "core/partition.py:Partition._head",
        "core/partition.py:Partition.catastrophic",
    ),
    "PROTOCOL_ERROR": (
        "core/wire/connection.py:Connection._on_hello",
        "core/wire/connection.py:Connection._on_ready",
        "core/wire/connection.py:Connection._receive_control",
        "core/wire/connection.py:Connection._receive_frame",
        "core/wire/connection.py:Connection._receive_handshake",
        "core/wire/connection.py:Connection._receive_push",
        "core/wire/connection.py:Connection._receive_request",
        "core/wire/connection.py:Connection._receive_response",
        "core/wire/connection.py:Connection._receive_window",
        "core/wire/connection.py:Connection.receive_data",
        "core/wire/frames.py:FrameDecoder._header_error",
    ),
    "FRAME_TOO_LARGE": ("core/wire/frames.py:FrameDecoder._header_error",),
    "VERSION_UNSUPPORTED": (
        "core/wire/connection.py:Connection._on_hello",
        "core/wire/connection.py:Connection._on_welcome",
    ),
    "CLUSTER_MISMATCH": (
        "core/wire/connection.py:Connection._on_hello",
        "core/wire/connection.py:Connection._on_welcome",
    ),
    "AUTH_FAILED": (
        "core/wire/connection.py:Connection._on_auth",
        "core/wire/connection.py:Connection._on_welcome",
    ),
    "UNSUPPORTED_MESSAGE": (
        "core/wire/connection.py:Connection._receive_request",
        "runtime/dispatch.py:dispatch",
    ),
    "OVERLOADED": (
        "core/wire/connection.py:Connection._receive_request",
        "runtime/server.py:NodeServer.hold",
        "runtime/server.py:_ServerProtocol._start",
    ),
    "SHUTTING_DOWN": (
        "core/wire/connection.py:Connection._receive_request",
        "runtime/server.py:_ServerProtocol._outcome",
        "runtime/server.py:_ServerProtocol.go_away",
    ),
    "CONNECTION_LOST": (
        "client.py:_Channel.connection_lost",
        "client.py:_Channel.data_received",
        "client.py:_Channel.submit",
        "core/wire/connection.py:Connection.connection_lost",
    ),
    "TIMEOUT": (
        "client.py:Client._before",
        "client.py:Client._route",
        "client.py:_Channel._sweep",
    ),
    "FLOW_CONTROL_ERROR": (
        "core/wire/connection.py:Connection._receive_push",
        "core/wire/connection.py:Connection._receive_window",
    ),
    "UNREACHABLE": ("client.py:Client._connect", "client.py:_Channel.connection_lost"),
    "FRAME_TIMEOUT": ("runtime/server.py:NodeServer._sweep",),
    "NOT_A_BRAID_NODE": ("client.py:_Channel._failure",),
    "LISTEN_FAILED": (
        "runtime/metrics.py:MetricsEndpoint.__init__",
        "runtime/server.py:listen_socket",
    ),
    "NOT_LEADER": (
        "core/partition.py:Partition._check_writable",
        "core/partition.py:Partition._head",
        "core/partition.py:Partition.apply",
        "core/partition.py:Partition.install",
        "core/partition.py:Partition.lost_leadership",
    ),
    "INTERNAL": (
        "client.py:_Channel.submit",
        "runtime/server.py:_ServerProtocol._failure",
        "runtime/server.py:_ServerProtocol.data_received",
    ),
}

# Sites whose code is a variable, each with the codes it can carry and why it fits.
REVIEWED_DYNAMIC_SITES: dict[str, str] = {
    "cli/common.py:run_on_store": "STORE_LOCKED again, its detail naming the holder",
    "cli/transfer.py:_import_one": "a document's write failed during braid import: its own "
    "code unchanged, the detail naming the document and its line in the file",
    "client.py:error_from": "the node's answer: whatever code the node raised, unchanged",
    "storage/applied.py:storage_error": "SQLite's failure: APPLIED_STATE_CORRUPT, DISK_FULL, "
    "STORE_ACCESS, or APPLIED_STATE_FAILED while writing",
    "storage/documents.py:Documents.recover": "a replay failure that is not the log's "
    "fault (APPLIED_STATE_CORRUPT, STORE_ACCESS, DISK_FULL), its detail naming the record",
}


def _catalog_name(node: ast.expr) -> str | None:
    """The entry a call's first argument names: NAME, errors.NAME or either's .code."""
    if isinstance(node, ast.Attribute) and node.attr == "code":
        node = node.value
    if isinstance(node, ast.Name) and lookup_name(node.id):
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "errors"
        and lookup_name(node.attr)
    ):
        return node.attr
    return None


def lookup_name(name: str) -> bool:
    return any(info.name == name for info in catalog())


# Constructors whose first argument is the code a failure carries.
_ERROR_CONSTRUCTORS = frozenset({"BraidError", "_Violation", "FrameError"})


class _SiteFinder(ast.NodeVisitor):
    """Every call whose first argument names a catalog entry, by enclosing function; and
    every error constructor whose first argument is not a catalog name (dynamic)."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.sites: set[tuple[str, str]] = set()  # (code name, "module:function")
        self.dynamic: set[str] = set()

    def _enter(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter

    def visit_Call(self, node: ast.Call) -> None:
        where = f"{self.module}:{'.'.join(self.scope) or '<module>'}"
        if node.args:
            name = _catalog_name(node.args[0])
            function = node.func
            callee = function.id if isinstance(function, ast.Name) else ""
            if isinstance(function, ast.Attribute):
                callee = function.attr
            if name is not None:
                self.sites.add((name, where))
            elif callee in _ERROR_CONSTRUCTORS:
                self.dynamic.add(where)
        self.generic_visit(node)


def raise_sites() -> tuple[set[tuple[str, str]], set[str]]:
    """Every (code, site) in src/braid (errors.py, which defines them, aside), and the
    dynamic sites."""
    sites: set[tuple[str, str]] = set()
    dynamic: set[str] = set()
    for path in sorted(SOURCE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == SOURCE:
            continue
        finder = _SiteFinder(str(path.relative_to(SOURCE)))
        finder.visit(ast.parse(path.read_text(encoding="utf-8")))
        sites |= finder.sites
        dynamic |= finder.dynamic
    return sites, dynamic


def test_every_raise_site_was_reviewed() -> None:
    """Every place that raises, answers or sends a catalogued code is in the reviewed table
    under that code, and every entry of the table still exists: a new site with a code
    whose description was not read against it fails here."""
    sites, dynamic = raise_sites()
    reviewed = {(code, site) for code, listed in REVIEWED_RAISE_SITES.items() for site in listed}
    new = sorted(sites - reviewed)
    gone = sorted(reviewed - sites)
    assert not new, "review each code's description against these sites, then list them " + (
        "in REVIEWED_RAISE_SITES:\n" + "\n".join(f'  "{code}": "{site}"' for code, site in new)
    )
    assert not gone, f"these reviewed sites no longer exist; remove them: {gone}"
    assert dynamic == set(REVIEWED_DYNAMIC_SITES), (
        "sites raising a code held in a variable changed: review them in "
        f"REVIEWED_DYNAMIC_SITES: {sorted(dynamic ^ set(REVIEWED_DYNAMIC_SITES))}"
    )


def test_the_review_table_names_real_codes_in_order() -> None:
    """The table's keys are catalog names, in code order, and no site is listed twice."""
    names = list(REVIEWED_RAISE_SITES)
    assert all(lookup_name(name) for name in names)
    assert names == sorted(names, key=lambda name: getattr(errors, name).code)
    for listed in REVIEWED_RAISE_SITES.values():
        assert len(set(listed)) == len(listed)


def test_the_site_scan_sees_a_new_raise() -> None:
    """The scan has teeth: a module raising BraidError(errors.WAL_FAILED) in a new
    function, or a code through a variable, is found."""
    finder = _SiteFinder("example.py")
    source = (
        "def fresh():\n"
        "    raise BraidError(errors.WAL_FAILED, 'x')\n"
        "def variable(info):\n"
        "    raise BraidError(info, 'x')\n"
    )
    finder.visit(ast.parse(source))
    assert finder.sites == {("WAL_FAILED", "example.py:fresh")}
    assert finder.dynamic == {"example.py:variable"}


def test_descriptions_fit_the_command_line_and_the_api() -> None:
    """Descriptions that the CLI prints do not speak Python: HEAD_SEQ_OFF names no API
    call, and INVALID_ARGUMENT, which addresses and secret files no longer raise, does
    not describe settings (INVALID_SETTING does)."""
    assert "compute(" not in errors.HEAD_SEQ_OFF.description
    assert "HOST:PORT" not in errors.INVALID_ARGUMENT.description
    assert "secret" in errors.INVALID_SETTING.description
    assert "address without a port" in errors.INVALID_SETTING.description
    assert not errors.STORE_LOCKED.retryable
    assert "--server" in errors.STORE_LOCKED.description
