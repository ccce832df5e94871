"""`braid doc`: the document API, one operation per subcommand.

Every subcommand either opens the embedded store in `--data DIR` or connects to a node with
`--server HOST:PORT` (secret from `--secret-file` or BRAID_SECRET), performs one operation
and closes. With `--data`, only `init` creates a missing store (in a missing or empty
directory; one holding other files is refused); the others refuse it with STORE_NOT_FOUND
(3007) and never create files. The key, the seqs and the update are checked before the
store is opened or the node contacted, so a bad one creates nothing. Keys beginning `mem_`
live in the memory engine: in an embedded store they vanish when the command exits, and
the commands say so (on a node they live as long as it runs).

A read (get, headpatch, rewind, history, list; and `braid export`) of a store that a
running node holds goes through that node: `braid serve` writes its address into the
store's LOCK, and the read uses it with the cluster secret (--secret-file or BRAID_SECRET),
saying so on stderr. A write, or a store held by anything else, is STORE_LOCKED naming the
holder and the way through it.

For scripts: without --data or --server, BRAID_DATA or BRAID_SERVER says where; `--redo`,
`--undo` and snapshot's `--document` take `@FILE` (the file's text) or `-` (stdin);
`patch --seq next` writes at the head + 1; and when `--undo` is left out, init and patch
compute it from the current document (the exact inverse of the redo), so rewinding over
the delta is exact.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from braid.cli.common import (
    EXIT_OK,
    positive_int,
    pretty_json,
    print_json,
    run_on_target,
    target_options,
)
from braid.core.document import check_initialize, check_updates
from braid.errors import HEAD_SEQ_OFF, INVALID_SETTING, BraidError
from braid.model import (
    HEAD_PATCH,
    REWIND,
    DocumentChange,
    JsonValue,
    Key,
    Update,
    apply_patch,
    diff,
    parse_object,
    to_json,
)
from braid.storage.api import DataService
from braid.storage.router import MEMORY_PREFIX

if TYPE_CHECKING:
    from braid.cli.common import Subparsers

Action = Callable[[DataService, argparse.Namespace], Awaitable[int]]
Check = Callable[[argparse.Namespace], None]  # raises for bad arguments; opens nothing


def register(subparsers: Subparsers) -> None:
    doc = subparsers.add_parser(
        "doc",
        help="read and write documents in an embedded store or on a node",
        description="Operate on the documents of the embedded store in --data DIR, or of "
        "the node at --server HOST:PORT. Only `init` creates a missing embedded store.",
    )
    commands = doc.add_subparsers(dest="doc_command", required=True, metavar="COMMAND")
    common = target_options()
    keyed = argparse.ArgumentParser(add_help=False, parents=[common])
    keyed.add_argument("space", metavar="SPACE", help="the document's space, e.g. 'chat'")
    keyed.add_argument("key", metavar="KEY", help="the document's key within the space")
    _register_commands(commands, common, keyed)


def _add(
    commands: Subparsers,
    name: str,
    parent: argparse.ArgumentParser,
    action: Action,
    text: str,
    *,
    check: Check | None = None,
    create: bool = False,
    read_only: bool = False,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, parents=[parent], help=text, description=text)
    handler = _handler(action, check=check, create=create, read_only=read_only)
    parser.set_defaults(handler=handler)
    return parser


def _handler(
    action: Action, *, check: Check | None, create: bool, read_only: bool
) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        if check is not None:
            check(args)  # before anything is opened, created or sent

        async def bound(service: DataService) -> int:
            return await action(service, args)

        return run_on_target(args, bound, create=create, read_only=read_only)

    return handle


def _check_key(args: argparse.Namespace) -> None:
    _key(args)


def _check_init(args: argparse.Namespace) -> None:
    _key(args)
    read_patches(args, ("redo", "undo"))
    check_initialize(_update(args, args.seq, args.seq, undo=args.undo or "{}"))


def _check_patch(args: argparse.Namespace) -> None:
    _key(args)
    read_patches(args, ("redo", "undo"))
    begin, end = _seqs(args, head=0 if args.seq == NEXT else None)
    check_updates([_update(args, begin, end, undo=args.undo or "{}")])


def _check_snapshot(args: argparse.Namespace) -> None:
    _key(args)
    read_patches(args, ("document",))


NEXT = "next"  # --seq next: the head + 1


def seq_or_next(text: str) -> int | str:
    """An argparse type: a seq of at least 1, or `next`."""
    return NEXT if text == NEXT else positive_int(text)


def read_patches(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Replace each JSON option given as @FILE by the file's text and as - by stdin's (one
    option at most may read stdin); INVALID_SETTING naming an unreadable file."""
    from_stdin = [name for name in names if getattr(args, name) == "-"]
    if len(from_stdin) > 1:
        options = " and ".join(f"--{name}" for name in from_stdin)
        raise BraidError(INVALID_SETTING, f"{options} both read stdin; give one as @FILE")
    for name in names:
        value = getattr(args, name)
        if value == "-":
            setattr(args, name, sys.stdin.read())
        elif value is not None and value.startswith("@"):
            path = Path(value[1:])
            try:
                setattr(args, name, path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or error
                raise BraidError(
                    INVALID_SETTING, f"cannot read --{name} from {path}: {reason}"
                ) from None


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0 (a seq to read from, a history count)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _add_update_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redo",
        required=True,
        metavar="JSON",
        help="JSON merge patch to apply; @FILE reads it from FILE, - from stdin",
    )
    parser.add_argument(
        "--undo",
        metavar="JSON",
        help="JSON merge patch that reverts it (@FILE, - as --redo); left out, it is computed "
        "from the current document, exactly",
    )
    parser.add_argument("--who", default="", help="who made the change (stored as given)")
    parser.add_argument("--request", default="", help="the request behind it (stored as given)")


def _register_commands(
    commands: Subparsers, common: argparse.ArgumentParser, keyed: argparse.ArgumentParser
) -> None:
    init = _add(
        commands,
        "init",
        keyed,
        _init,
        "create a document with its first delta (creates the store if missing)",
        check=_check_init,
        create=True,
    )
    init.add_argument(
        "--seq", type=positive_int, default=1, metavar="N", help="its seq (default 1)"
    )
    _add_update_fields(init)
    patch = _add(
        commands,
        "patch",
        keyed,
        _patch,
        "append a delta; it must start at head + 1",
        check=_check_patch,
    )
    seqs = patch.add_mutually_exclusive_group(required=True)
    seqs.add_argument(
        "--seq",
        type=seq_or_next,
        metavar="N",
        help="the delta's seq (begin = end = N); `next` is the head + 1",
    )
    seqs.add_argument(
        "--seq-begin", type=positive_int, metavar="N", help="first seq of a range delta"
    )
    patch.add_argument(
        "--seq-end", type=positive_int, metavar="N", help="last seq (with --seq-begin)"
    )
    _add_update_fields(patch)
    _add(
        commands,
        "get",
        keyed,
        _get,
        "print a document and its head seq",
        check=_check_key,
        read_only=True,
    )
    headpatch = _add(
        commands,
        "headpatch",
        keyed,
        _headpatch,
        "print the merge patch from SEQ to the head",
        check=_check_key,
        read_only=True,
    )
    headpatch.add_argument(
        "seq", type=non_negative_int, metavar="SEQ", help="the seq the reader is at"
    )
    rewind = _add(
        commands,
        "rewind",
        keyed,
        _rewind,
        "print the merge patch from the head back to SEQ",
        check=_check_key,
        read_only=True,
    )
    rewind.add_argument("seq", type=non_negative_int, metavar="SEQ", help="the seq to go back to")
    snapshot = _add(
        commands,
        "snapshot",
        keyed,
        _snapshot,
        "compact: fold old deltas up to SEQ into one",
        check=_check_snapshot,
    )
    snapshot.add_argument(
        "seq",
        type=non_negative_int,
        metavar="SEQ",
        help="a seq that ends one of the document's deltas",
    )
    snapshot.add_argument(
        "--history",
        type=non_negative_int,
        required=True,
        metavar="N",
        help="keep the N newest deltas",
    )
    snapshot.add_argument(
        "--document",
        metavar="JSON",
        help="the document at SEQ as the writer holds it (@FILE, - as --redo; default: "
        "computed from the store)",
    )
    history = _add(
        commands,
        "history",
        keyed,
        _history,
        "list a document's retained deltas: seqs, who, request, kind, sizes, redo and undo",
        check=_check_key,
        read_only=True,
    )
    history.add_argument("--last", type=positive_int, metavar="N", help="only the N newest deltas")
    _add(commands, "delete", keyed, _delete, "delete a document", check=_check_key)
    _add(commands, "list", common, _list, "list every document: seq, deltas, bytes", read_only=True)


# -- writes ---------------------------------------------------------------------------------


def _key(args: argparse.Namespace) -> Key:
    return Key(args.space, args.key)


def _update(args: argparse.Namespace, seq_begin: int, seq_end: int, *, undo: str) -> Update:
    return Update(
        seq_begin=seq_begin,
        seq_end=seq_end,
        who=args.who,
        request=args.request,
        redo=args.redo,
        undo=undo,
    )


def _seqs(args: argparse.Namespace, head: int | None) -> tuple[int, int]:
    """A patch's seq_begin and seq_end, from --seq (`next`: `head` + 1) or --seq-begin
    [--seq-end]."""
    if args.seq is not None:
        if args.seq_end is not None:
            raise BraidError(INVALID_SETTING, "--seq-end goes with --seq-begin, not with --seq")
        if args.seq == NEXT:
            assert head is not None
            return head + 1, head + 1
        seq: int = args.seq
        return seq, seq
    begin: int = args.seq_begin
    return begin, begin if args.seq_end is None else args.seq_end


def _done(args: argparse.Namespace, key: Key, message: str, **fields: object) -> int:
    if args.json:
        print_json({"ok": True, "space": key.space, "key": key.key, **fields})
        return EXIT_OK
    print(message)
    if args.data is not None and key.key.startswith(MEMORY_PREFIX):
        print(f"note: keys beginning {MEMORY_PREFIX!r} live in memory; this one is gone now")
    return EXIT_OK


def computed_undo(before: JsonValue, redo: str) -> str:
    """The undo of `redo` applied to the document `before`: the exact merge patch from the
    document after it back to `before` (as `compute` is exact)."""
    after = apply_patch(before, parse_object(redo, "redo"))
    return to_json(diff(after, before))


async def _init(store: DataService, args: argparse.Namespace) -> int:
    key = _key(args)
    undo = args.undo if args.undo is not None else computed_undo({}, args.redo)
    await store.initialize(key, _update(args, args.seq, args.seq, undo=undo))
    return _done(args, key, f"initialized {key} at seq {args.seq}", seq=args.seq)


async def _patch(store: DataService, args: argparse.Namespace) -> int:
    """Append one delta. `--seq next` and a left-out --undo read the document first; a
    write landing in between makes the patch fail with HEAD_SEQ_OFF, never apply an undo
    computed from another document."""
    key = _key(args)
    head: DocumentChange | None = None
    if args.seq == NEXT or args.undo is None:
        head = await store.get(key)
    begin, end = _seqs(args, None if head is None else head.seq)
    undo = args.undo
    if undo is None:
        assert head is not None
        if head.seq != begin - 1:
            raise BraidError(
                HEAD_SEQ_OFF,
                f"patch starts at seq {begin}, but the head is {head.seq} (the undo is "
                "computed from the head document)",
            )
        undo = computed_undo(json.loads(head.document), args.redo)
    await store.patch(key, [_update(args, begin, end, undo=undo)])
    shown = str(begin) if begin == end else f"{begin}..{end}"
    return _done(args, key, f"patched {key} at seq {shown}", seq_begin=begin, seq_end=end)


async def document_at(store: DataService, key: Key, seq: int) -> tuple[str, int]:
    """The document as it stood at `seq` (head document rewound), and the seq it landed on."""
    head = await store.get(key)
    rewind = await store.compute(key, REWIND, seq)
    document = apply_patch(json.loads(head.document), json.loads(rewind.document))
    return to_json(document), rewind.seq


async def _snapshot(store: DataService, args: argparse.Namespace) -> int:
    key = _key(args)
    document = args.document
    if document is None:
        document, _ = await document_at(store, key, args.seq)
    removed = await store.snapshot(key, args.seq, document, args.history)
    message = (
        f"snapshot of {key} at seq {args.seq} keeping {args.history} newest: "
        f"removed {removed} deltas"
    )
    return _done(args, key, message, removed=removed, seq=args.seq, history=args.history)


async def _delete(store: DataService, args: argparse.Namespace) -> int:
    key = _key(args)
    await store.delete(key)
    return _done(args, key, f"deleted {key}")


# -- reads ----------------------------------------------------------------------------------


def _show(
    args: argparse.Namespace, key: Key, change: DocumentChange, headline: str, name: str
) -> int:
    """Print a document (`name` "document") or a merge patch ("patch") and its seq."""
    if args.json:
        print_json(
            {
                "space": key.space,
                "key": key.key,
                "seq": change.seq,
                "reads": change.reads,
                name: json.loads(change.document),
            }
        )
        return EXIT_OK
    print(headline)
    print(pretty_json(change.document))
    return EXIT_OK


async def _get(store: DataService, args: argparse.Namespace) -> int:
    key = _key(args)
    change = await store.get(key)
    return _show(
        args, key, change, f"{key} at seq {change.seq} ({change.reads} deltas read)", "document"
    )


async def _headpatch(store: DataService, args: argparse.Namespace) -> int:
    key = _key(args)
    change = await store.compute(key, HEAD_PATCH, args.seq)
    headline = f"{key}: patch from seq {args.seq} to the head {change.seq}"
    return _show(args, key, change, f"{headline} ({change.reads} deltas read)", "patch")


async def _rewind(store: DataService, args: argparse.Namespace) -> int:
    key = _key(args)
    change = await store.compute(key, REWIND, args.seq)
    headline = f"{key}: patch from the head back to seq {change.seq}"
    return _show(args, key, change, f"{headline} ({change.reads} deltas read)", "patch")


def _seq_range(update: Update) -> str:
    begin, end = update.seq_begin, update.seq_end
    return str(begin) if begin == end else f"{begin}..{end}"


def delta_json(update: Update) -> dict[str, object]:
    """One delta as `doc history --json` prints it: its fields, the UTF-8 sizes of its
    redo and undo, and both patches parsed."""
    return {
        "seq_begin": update.seq_begin,
        "seq_end": update.seq_end,
        "who": update.who,
        "request": update.request,
        "kind": update.kind,
        "active": update.active,
        "asset_bytes": update.asset_bytes,
        "redo_bytes": len(update.redo.encode()),
        "undo_bytes": len(update.undo.encode()),
        "redo": json.loads(update.redo),
        "undo": json.loads(update.undo),
    }


async def _history(store: DataService, args: argparse.Namespace) -> int:
    key = _key(args)
    history = await store.history(key)
    deltas = history.deltas[-args.last :] if args.last is not None else history.deltas
    if args.json:
        print_json(
            {
                "space": key.space,
                "key": key.key,
                "seq": history.head,
                "compacted_through": history.compacted_through,
                "compacted_exact": history.compacted_exact,
                "retained": len(history.deltas),
                "deltas": [delta_json(update) for update in deltas],
            }
        )
        return EXIT_OK
    title = f"{key} at seq {history.head}: {len(history.deltas)} deltas retained"
    if history.compacted_through:
        title += f", compacted through seq {history.compacted_through}"
    if len(deltas) < len(history.deltas):
        title += f" (the {len(deltas)} newest shown)"
    table = Table(title=Text(title))
    table.add_column("seq", justify="right", no_wrap=True)
    for column in ("who", "request", "kind"):
        table.add_column(column, overflow="fold")
    table.add_column("redo B", justify="right")
    table.add_column("undo B", justify="right")
    table.add_column("redo", overflow="fold")
    table.add_column("undo", overflow="fold")
    for update in deltas:
        table.add_row(
            _seq_range(update),
            Text(update.who),
            Text(update.request),
            Text(update.kind),
            str(len(update.redo.encode())),
            str(len(update.undo.encode())),
            Text(update.redo),
            Text(update.undo),
        )
    Console(highlight=False).print(table)
    return EXIT_OK


async def _list(store: DataService, args: argparse.Namespace) -> int:
    documents = await store.inventory()
    if args.json:
        print_json(
            [
                {
                    "space": info.key.space,
                    "key": info.key.key,
                    "seq": info.seq,
                    "deltas": info.deltas,
                    "bytes": info.bytes,
                }
                for info in documents
            ]
        )
        return EXIT_OK
    where = args.data if args.data is not None else args.server
    table = Table(title=Text(f"{len(documents)} documents in {where}"))
    for column in ("space", "key"):
        table.add_column(column, overflow="fold")
    for column in ("seq", "deltas", "bytes"):
        table.add_column(column, justify="right")
    for info in documents:
        numbers = (str(info.seq), str(info.deltas), str(info.bytes))
        table.add_row(Text(info.key.space), Text(info.key.key), *numbers)
    Console(highlight=False).print(table)
    return EXIT_OK
