#!/usr/bin/env python3
# restore_fsync_order.py LOG PGDATA [TABLESPACE-DIR...]
#
# Reads what "strace -f -y -o LOG -e trace=fsync,fdatasync,rename,renameat,
# renameat2,write bk restore ... --json" recorded and checks the order of a
# restore's durability:
#   - every file and directory of the restored tree (PGDATA and the
#     tablespace directories) was fsynced, successfully, before the first
#     rename into that tree, that is before anything declaring the restore
#     complete
#     (backup_label, the recovery settings, recovery.signal,
#     tablespace_map, backup_manifest: each written to a temporary name,
#     fsynced and renamed into place);
#   - global/pg_control was fsynced under its temporary name in that batch,
#     renamed into place after every other rename, and global fsynced after
#     that rename;
#   - each later file was fsynced under its temporary name before its
#     rename;
#   - nothing was fsynced after the report went to standard output.
# Renames elsewhere, and writes to a pipe, are not the restore's: before it
# writes anything, bk restore decrypts WAL into a temporary directory and
# reads what pg_waldump prints to a pipe (the report goes to a file).
# bk names paths under the directories it opened as /proc/self/fd/N/...:
# such a name is read as the one under PGDATA or a tablespace directory
# whose parent exists.
# Prints what it checked; exits 1 naming every problem.
import os
import re
import sys

LATE = {"backup_label", "backup_manifest", "postgresql.auto.conf",
        "recovery.signal", "tablespace_map"}
CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
FD_PATH = re.compile(r"^\d+<(.*?)>")
RESULT = re.compile(r"\)\s+=\s+(\S+)")
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def events(log):
    """(index, call, arguments-and-result, succeeded) per completed call."""
    pending = {}
    out = []
    with open(log) as f:
        for index, line in enumerate(f):
            line = line.rstrip("\n")
            m = RESUMED.match(line)
            if m:
                pid, call, rest = m.groups()
                start = pending.pop((pid, call), "")
                text = start + rest
            else:
                m = CALL.match(line)
                if not m:
                    continue
                pid, call, text = m.groups()
                if text.endswith("<unfinished ...>"):
                    pending[(pid, call)] = text[: -len("<unfinished ...>")]
                    continue
            result = RESULT.findall(text)
            ok = bool(result) and result[-1] not in ("-1", "?")
            out.append((index, call, text, ok))
    return out


PROC_FD = re.compile(r"^/proc/self/fd/\d+(/.*)?$")


def shown(path, tops):
    """A /proc/self/fd/N path as the directory it names."""
    m = PROC_FD.match(path)
    if not m:
        return path
    for top in tops:
        candidate = top + (m.group(1) or "")
        if os.path.isdir(os.path.dirname(candidate)):
            return candidate
    return path


def main():
    log, pgdata, spcs = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3:]
    problems = []
    fsyncs = {}  # path -> index of the first successful fsync
    fsync_failed = []
    renames = []  # (index, from, to)
    stdout_writes = []
    last_fsync = -1
    for index, call, text, ok in events(log):
        if call in ("fsync", "fdatasync"):
            m = FD_PATH.match(text)
            if not m:
                continue
            if ok:
                fsyncs.setdefault(m.group(1), index)
                last_fsync = index
            else:
                fsync_failed.append(m.group(1))
        elif call.startswith("rename") and ok:
            names = STRING.findall(text)
            if len(names) >= 2:
                dst = shown(names[1], [pgdata] + spcs)
                if any(dst == top or dst.startswith(top + "/")
                       for top in [pgdata] + spcs):
                    renames.append((index, shown(names[0], [pgdata] + spcs),
                                    dst))
        elif (call == "write" and text.startswith("1<")
              and not text.startswith("1<pipe:")):
            stdout_writes.append(index)
    for path in fsync_failed:
        problems.append(f"fsync of {path} failed")
    if not renames:
        problems.append("no rename at all: not a complete restore's trace")
        first_rename = -1
    else:
        first_rename = renames[0][0]

    control = os.path.join(pgdata, "global/pg_control")
    files = dirs = 0
    for top in [pgdata] + spcs:
        for root, dirnames, filenames in os.walk(top):
            dirs += 1
            at = fsyncs.get(root)
            if at is None:
                problems.append(f"directory {root} was never fsynced")
            elif at > first_rename:
                problems.append(f"directory {root} was fsynced only after "
                                "the first rename")
            for name in filenames:
                path = os.path.join(root, name)
                if root == pgdata and name in LATE or path == control:
                    continue
                files += 1
                at = fsyncs.get(path)
                if at is None:
                    problems.append(f"file {path} was never fsynced")
                elif at > first_rename:
                    problems.append(f"file {path} was fsynced only after "
                                    "the first rename")

    # pg_control: fsynced in the batch, renamed last, its directory after.
    temp = control + ".bk-restore"
    at = fsyncs.get(temp)
    if at is None or at > first_rename:
        problems.append(f"{temp} was not fsynced before the first rename")
    control_rename = [r for r in renames if r[1] == temp and r[2] == control]
    if not control_rename:
        problems.append(f"{temp} was never renamed to {control}")
    else:
        at = control_rename[0][0]
        if renames[-1][0] != at:
            problems.append("a rename came after pg_control's")
        if not any(p == os.path.join(pgdata, "global") and i > at
                   for p, i in all_fsyncs(log)):
            problems.append("global was not fsynced after pg_control's rename")
    # The later files: fsynced under their temporary name, then renamed.
    for index, src, dst in renames:
        if os.path.dirname(dst) == pgdata and os.path.basename(dst) in LATE:
            if not any(p == src and i < index for p, i in all_fsyncs(log)):
                problems.append(f"{dst} was renamed into place from {src} "
                                "without an fsync first")
    late_present = {n for n in LATE if os.path.exists(os.path.join(pgdata, n))}
    late_renamed = {os.path.basename(d) for _, _, d in renames
                    if os.path.dirname(d) == pgdata}
    for name in sorted(late_present - late_renamed):
        problems.append(f"{name} was not renamed into place (not durable)")
    if not stdout_writes:
        problems.append("the report never went to standard output")
    elif stdout_writes[0] < last_fsync:
        problems.append("an fsync came after the report was written")

    print(f"{files} files and {dirs} directories checked, "
          f"{len(renames)} renames, {len(fsyncs)} paths fsynced")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


_ALL = {}


def all_fsyncs(log):
    """Every successful fsync as (path, index)."""
    if log not in _ALL:
        _ALL[log] = [(FD_PATH.match(t).group(1), i)
                     for i, c, t, ok in events(log)
                     if c in ("fsync", "fdatasync") and ok and FD_PATH.match(t)]
    return _ALL[log]


if __name__ == "__main__":
    sys.exit(main())
