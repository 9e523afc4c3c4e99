#!/usr/bin/env python3
"""Generate src/keys/table.rs, the command table, from a running redis-server.

Reads `COMMAND` (name, arity, flags, key specs, subcommands) and `COMMAND DOCS`
(group, summary) over a plain socket and writes the Rust table that
`resp_sidecar::keys` searches. Run by hand when the supported Redis version
changes, never in CI:

    dir=$(mktemp -d) && cd "$dir" && redis-server --port 6399 --save '' \\
        --appendonly no --daemonize no &
    python3 scripts/gen-command-table.py --port 6399

The output is formatted with rustfmt when it is on the PATH (otherwise run
`cargo fmt` afterwards). Python 3 standard library only.

Key specs Redis itself cannot interpret on their own (begin_search or find_keys
"unknown", the INCOMPLETE or VARIABLE_FLAGS flags) need a hand-written
procedure in src/keys/procs.rs; the script refuses to write a table in which
such a command has none, so a new Redis version cannot slip one through.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "keys", "table.rs")

# Commands whose arguments src/keys/procs.rs walks the way the command's own
# parser does, instead of (or on top of) interpreting the key specs.
PROCS = {
    # begin_search "unknown" for BY/GET patterns and STORE.
    "sort": "Sort",
    "sort_ro": "SortRo",
    # KEYS spec is INCOMPLETE (a key may be named "keys").
    "migrate": "Migrate",
    # VARIABLE_FLAGS: OW without GET, RW with it.
    "set": "Set",
    # VARIABLE_FLAGS: RO for GET-only requests.
    "bitfield": "Bitfield",
    # STORE/STOREDIST specs take the first keyword; the parser lets the last one win,
    # and a STORE key named "storedist" fools the keyword search.
    "georadius": "GeoRadius",
    "georadiusbymember": "GeoRadiusByMember",
    # The STREAMS keyword search starts at 4, assuming GROUP comes first; the parser
    # accepts COUNT/BLOCK/NOACK before GROUP (and a group named "streams").
    "xreadgroup": "XReadGroup",
    # No key specs, but OBJECT/SDSLEN/... name a key.
    "debug": "Debug",
}

COMMAND_FLAGS = {
    "write": "WRITE",
    "readonly": "READONLY",
    "denyoom": "DENYOOM",
    "admin": "ADMIN",
    "blocking": "BLOCKING",
    "movablekeys": "MOVABLE_KEYS",
    "noscript": "NOSCRIPT",
    "pubsub": "PUBSUB",
}

KEY_FLAGS = {
    "RO": "RO",
    "RW": "RW",
    "OW": "OW",
    "RM": "RM",
    "access": "ACCESS",
    "update": "UPDATE",
    "insert": "INSERT",
    "delete": "DELETE",
    "not_key": "NOT_KEY",
    "incomplete": "INCOMPLETE",
    "variable_flags": "VARIABLE_FLAGS",
}


class Redis:
    """A minimal RESP2 client: enough for COMMAND and COMMAND DOCS."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        reply = self.read()
        if isinstance(reply, RuntimeError):
            raise reply
        return reply

    def read(self):
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise RuntimeError("connection closed mid-reply")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply type %r" % line)


def pairs(flat):
    """A RESP2 flat [k, v, k, v...] array as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Flag constants the table uses, by Rust type, for the `const` lines at its top.
USED_FLAGS = {"KeyFlags": set(), "CommandFlags": set()}


def flags_expr(ty, names, table, what, bare=False):
    consts = []
    for n in names:
        if n in table:
            consts.append(table[n])
        elif what == "key spec":
            raise SystemExit("unknown key spec flag %r: extend KeyFlags and KEY_FLAGS" % n)
    USED_FLAGS[ty].update(consts)
    bits = " | ".join(consts) or "0"
    return bits if bare else "%s(%s)" % (ty, bits)


def flag_consts():
    lines = []
    for ty, bits in (("CommandFlags", "u32"), ("KeyFlags", "u16")):
        for c in sorted(USED_FLAGS[ty]):
            lines.append("const %s: %s = %s::%s.0;\n" % (c, bits, ty, c))
    return "".join(lines)


def spec_expr(name, spec):
    s = pairs(spec)
    bs, fk = pairs(s["begin_search"]), pairs(s["find_keys"])
    flags = flags_expr("KeyFlags", s["flags"], KEY_FLAGS, "key spec", bare=True)
    bspec, fspec = pairs(bs["spec"] or []), pairs(fk["spec"] or [])
    if bs["type"] == "index":
        begin = "Index(%d)" % bspec["index"]
    elif bs["type"] == "keyword":
        begin = "keyword(%s, %d)" % (
            rust_str(bspec["keyword"]),
            bspec["startfrom"],
        )
    elif bs["type"] == "unknown":
        begin = "BeginSearch::Unknown"
    else:
        raise SystemExit("%s: unknown begin_search type %r" % (name, bs["type"]))
    if fk["type"] == "range":
        find = "range(%d, %d, %d)" % (
            fspec["lastkey"],
            fspec["keystep"],
            fspec["limit"],
        )
    elif fk["type"] == "keynum":
        find = "keynum(%d, %d, %d)" % (
            fspec["keynumidx"],
            fspec["firstkey"],
            fspec["keystep"],
        )
    elif fk["type"] == "unknown":
        find = "FindKeys::Unknown"
    else:
        raise SystemExit("%s: unknown find_keys type %r" % (name, fk["type"]))
    needs_proc = (
        bs["type"] == "unknown"
        or fk["type"] == "unknown"
        or "incomplete" in s["flags"]
        or "variable_flags" in s["flags"]
    )
    return "KeySpec::new(%s, %s, %s)" % (flags, begin, find), needs_proc


def static_name(container):
    return container.upper().replace("-", "_") + "_SUBCOMMANDS"


def entry(info, docs, container=None):
    """Rust source of one CommandInfo and the statics its subcommands need."""
    name, arity, flags, specs, subs = info[0], info[1], info[2], info[8], info[9]
    token = name.split("|")[-1].upper()
    full = name.upper().replace("|", " ")
    spec_exprs, needs_proc = [], False
    for sp in specs:
        expr, need = spec_expr(name, sp)
        spec_exprs.append(expr)
        needs_proc = needs_proc or need
    proc_name = PROCS.get(name, "None")
    if needs_proc and proc_name == "None":
        raise SystemExit(
            "%s: its key specs cannot be interpreted on their own; add a procedure" % name
        )
    doc = pairs(docs.get(name, []))
    sub_docs = pairs(doc.get("subcommands") or [])
    statics = []
    sub_ref = "&[]"
    if subs:
        sub_entries = []
        for sub in sorted(subs, key=lambda s: s[0].upper()):
            e, st = entry(sub, sub_docs, name)
            sub_entries.append(e)
            statics.extend(st)
        statics.append(
            "static %s: &[CommandInfo] = &[\n%s];\n" % (static_name(name), "".join(sub_entries))
        )
        sub_ref = static_name(name)
    comment = "    // %s (%s, since %s): %s\n" % (
        full,
        doc.get("group", "?"),
        doc.get("since", "?"),
        " ".join(str(doc.get("summary", "")).split()),
    )
    body = (
        "    CommandInfo {\n"
        "        name: %s,\n"
        "        token: %s,\n"
        "        flags: %s,\n"
        "        arity: %d,\n"
        "        key_specs: &[%s],\n"
        "        procedure: Proc::%s,\n"
        "        subcommands: %s,\n"
        "    },\n"
        % (
            rust_str(full),
            rust_str(token),
            flags_expr("CommandFlags", flags, COMMAND_FLAGS, "command"),
            arity,
            ", ".join(spec_exprs),
            proc_name,
            sub_ref,
        )
    )
    return comment + body, statics


def generate(redis):
    version = pairs(
        [x for line in redis.call("INFO", "server").splitlines() if ":" in line
         for x in line.split(":", 1)]
    ).get("redis_version", "?")
    commands = redis.call("COMMAND")
    docs = pairs(redis.call("COMMAND", "DOCS"))
    missing = set(PROCS) - {c[0] for c in commands}
    if missing:
        raise SystemExit("procedures for commands the server lacks: %s" % sorted(missing))
    entries, statics = [], []
    longest = 0
    for info in sorted(commands, key=lambda c: c[0].upper()):
        e, st = entry(info, docs)
        entries.append(e)
        statics.extend(st)
        longest = max([longest, len(info[0])] + [len(s[0].split("|")[1]) for s in info[9] or []])
    return (
        "//! The command table: every command and container subcommand of Redis %s,\n"
        "//! sorted by upper-case name so [`super::lookup`] can binary-search it.\n"
        "//!\n"
        "//! @generated by scripts/gen-command-table.py from `COMMAND` and `COMMAND DOCS`\n"
        "//! of redis-server %s. Do not edit by hand: start a redis-server of the version\n"
        "//! to support and run `python3 scripts/gen-command-table.py --port PORT`.\n"
        "\n"
        "//!\n"
        "//! Key specs read `KeySpec::new(flags, begin_search, find_keys)` with begin_search\n"
        "//! `Index(i)` or `keyword(word, startfrom)` and find_keys `range(lastkey, step,\n"
        "//! limit)` or `keynum(keynumidx, firstkey, step)`, as in `COMMAND INFO`.\n"
        "\n"
        "use super::procs::Proc;\n"
        "use super::spec::BeginSearch::{self, Index};\n"
        "use super::spec::{keynum, keyword, range, FindKeys, KeySpec};\n"
        "use super::{CommandFlags, CommandInfo, KeyFlags};\n"
        "\n"
        "/// The Redis version the table was generated from.\n"
        "pub const REDIS_VERSION: &str = %s;\n"
        "\n"
        "/// The longest command or subcommand name, in bytes.\n"
        "pub(super) const MAX_TOKEN_LEN: usize = %d;\n"
        "\n"
        "%s"
        "\n"
        "pub(super) static COMMANDS: &[CommandInfo] = &[\n%s];\n"
        "\n%s"
        % (
            version,
            version,
            rust_str(version),
            longest,
            flag_consts(),
            "".join(entries),
            "\n".join(statics),
        )
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-o", "--output", default=OUTPUT, help="file to write, - for stdout")
    args = ap.parse_args()
    text = generate(Redis(args.host, args.port))
    if args.output == "-":
        sys.stdout.write(text)
        return
    with open(args.output, "w") as f:
        f.write(text)
    rustfmt = shutil.which("rustfmt")
    if rustfmt:
        subprocess.run([rustfmt, "--edition", "2021", args.output], check=True)
    else:
        print("rustfmt not found: run `cargo fmt` before committing", file=sys.stderr)
    print("wrote %s" % os.path.normpath(args.output), file=sys.stderr)


if __name__ == "__main__":
    main()
