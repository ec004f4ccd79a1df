# loom-gdb.py — gdb commands for programs that use loom (goroutines in C).
#
#   info goroutines        one line per live goroutine: id, status, wait reason (or the
#                          thread it runs on), name, and where it was created (loom_run
#                          for goroutine 1); `*` marks the goroutine running on gdb's
#                          selected thread
#   goroutine N bt         backtrace of goroutine N (N may be any expression: 3, $1, id_var)
#   goroutine all bt       backtraces of every live goroutine
#   $loom_g(N)             convenience function: the goroutine record (struct loom__g *),
#                          e.g. `p *$loom_g(3)`
#
# Loading it:
#   - by hand, in gdb or in ~/.gdbinit:   source /path/to/loom/tools/gdb/loom-gdb.py
#   - automatically with libloom.so: `cmake --install` puts this file where gdb looks for a
#     library's own script, <prefix>/share/gdb/auto-load/<libdir>/libloom.so.<version>-gdb.py.
#     With prefix /usr gdb finds it as is; with another prefix tell gdb about the directory
#     and trust it (in ~/.gdbinit):
#         add-auto-load-scripts-directory /usr/local/share/gdb/auto-load
#         add-auto-load-safe-path /usr/local/share/gdb/auto-load
#     Programs linked with libloom.a carry loom inside the executable: source the script.
#
# Needs loom's debug info (-g; CMake RelWithDebInfo and Debug builds have it): the commands
# read loom__sched.allg, the list of every goroutine record (src/internal.h), by type.
#
# How a backtrace is made: a goroutine that is not running keeps its registers on its own
# stack, saved by loom__ctx_switch (src/arch/ctx_x86_64_sysv_elf.S: rbp at sp+48, the return
# address at sp+56); loom is built with frame pointers, so the walk follows the rbp chain
# from there, within the goroutine's stack, and names each pc from the debug info (inlined
# functions included).  A goroutine switched out by the preemption signal has a signal
# frame on its stack: the walk goes on from the registers the kernel saved there.  Code
# built without frame pointers ends the walk early.  A goroutine running on a thread
# (running, or in a blocking call) is shown by gdb's own `backtrace` on that thread; the
# selected thread and frame are restored afterwards.
#
# Core files: the kernel's core dumps hold everything needed.  gdb's own `gcore` does not
# on kernels with guard regions (Linux 6.13+, MADV_GUARD_INSTALL under every goroutine
# stack): a read of a guard page fails and gcore leaves the rest of the stack arena out.
#
# x86-64 Linux only, as loom's context switch.  Nothing here writes to the program.

import struct

import gdb

# G status values, as src/internal.h: read from the debug info when it has the enum
# constants, else these (in order).  Wait reasons are names from loom__wait_names.
_STATUS_NAMES = ("idle", "runnable", "running", "waiting", "syscall", "dead")
_STATUS_ENUM = ("G_IDLE", "G_RUNNABLE", "G_RUNNING", "G_WAITING", "G_SYSCALL", "G_DEAD")

# Saved frame of loom__ctx_switch (offsets from G.sp).
_CTX_RBP = 48
_CTX_RET = 56
_CTX_SIZE = 64

# x86-64 Linux signal frame: the handler returns to __restore_rt, whose code is
# `mov $15, %rax; syscall` (rt_sigreturn); the ucontext follows the return address, and
# uc_mcontext.gregs starts 40 bytes in (uc_flags, uc_link, uc_stack).
_SIGRETURN_CODE = b"\x48\xc7\xc0\x0f\x00\x00\x00\x0f\x05"
_UC_GREGS = 40
_REG_RBP = 10
_REG_RSP = 15
_REG_RIP = 16

_MAX_FRAMES = 256


class _LoomError(gdb.GdbError):
    pass


def _read_u64(addr):
    try:
        mem = gdb.selected_inferior().read_memory(addr, 8)
    except gdb.MemoryError:
        raise _LoomError("loom: cannot read memory at 0x%x" % addr)
    return struct.unpack("<Q", bytes(mem))[0]


def _read_bytes(addr, n):
    try:
        return bytes(gdb.selected_inferior().read_memory(addr, n))
    except gdb.MemoryError:
        return b""


def _sched():
    """The value of loom__sched, or a clear error."""
    try:
        sched = gdb.parse_and_eval("loom__sched")
    except gdb.error as e:
        msg = str(e)
        if "unknown type" in msg:
            raise _LoomError("loom: loom__sched has no debug info: build loom with -g "
                             "(CMake RelWithDebInfo or Debug)")
        if "No symbol" in msg:
            raise _LoomError("loom: no symbol loom__sched: this program does not use loom, "
                             "or its symbols are stripped")
        raise _LoomError("loom: cannot read loom__sched: %s" % msg)
    return sched


def _status_values():
    """Maps each G status value to its name."""
    names = {}
    for i, (enum, name) in enumerate(zip(_STATUS_ENUM, _STATUS_NAMES)):
        try:
            names[int(gdb.parse_and_eval(enum))] = name
        except gdb.error:
            names[i] = name
    return names


def _wait_names():
    try:
        arr = gdb.parse_and_eval("loom__wait_names")
        lo, hi = arr.type.range()
        out = []
        for i in range(lo, hi + 1):
            try:
                out.append(arr[i].string())
            except (gdb.error, gdb.MemoryError):
                out.append("?")
        return out
    except gdb.error:
        return []


def _all_gs():
    """Yields (address, struct loom__g value) for every goroutine record."""
    sched = _sched()
    try:
        g = sched["allg"]
        seen = set()
        while int(g) != 0:
            addr = int(g)
            if addr in seen:
                raise _LoomError("loom: the goroutine list loops at 0x%x" % addr)
            seen.add(addr)
            val = g.dereference()
            yield addr, val
            g = val["allnext"]
    except gdb.MemoryError as e:
        raise _LoomError("loom: cannot read the goroutine list: %s" % e)
    except gdb.error as e:
        raise _LoomError("loom: the goroutine records are not what loom-gdb.py expects "
                         "(a different loom version?): %s" % e)


class _GInfo(object):
    """What the commands need to know about one goroutine record."""

    def __init__(self, addr, g, statuses, waits):
        self.addr = addr
        self.g = g
        self.id = int(g["id"])
        self.status = int(g["status"])
        self.status_name = statuses.get(self.status, "status %d" % self.status)
        self.waitreason = int(g["waitreason"])
        if self.waitreason < len(waits):
            self.wait_name = waits[self.waitreason]
        else:
            self.wait_name = "wait reason %d" % self.waitreason
        try:
            self.name = g["name"].string(length=_cstrlen(g["name"]))
        except (gdb.error, UnicodeDecodeError):
            self.name = "?"
        self.created_pc = int(g["created_pc"])
        self.m = int(g["m"])

    @property
    def live(self):
        return self.status_name not in ("dead", "idle") and self.id != 0

    @property
    def on_thread(self):
        """The goroutine runs on its M's thread (running, or in a blocking call)."""
        if self.status_name not in ("running", "syscall") or self.m == 0:
            return False
        try:
            return int(self.g["m"]["curg"]) == self.addr
        except (gdb.error, gdb.MemoryError):
            return False

    def tid(self):
        try:
            return int(self.g["m"]["tid"])
        except (gdb.error, gdb.MemoryError):
            return 0


def _cstrlen(arr):
    n = arr.type.sizeof
    raw = _read_bytes(int(arr.address), n)
    i = raw.find(b"\0")
    return i if i >= 0 else len(raw)


def _goroutines():
    statuses = _status_values()
    waits = _wait_names()
    return [_GInfo(a, g, statuses, waits) for a, g in _all_gs()]


def _thread_for_tid(tid):
    if tid <= 0:
        return None
    inf = gdb.selected_inferior()
    for th in inf.threads():
        if th.ptid[1] == tid:
            return th
    return None


def _selected_lwp():
    th = gdb.selected_thread()
    return th.ptid[1] if th is not None else None


# ---------------------------------------------------------------- symbolizing pcs

def _minsym(pc):
    """'name+0xoff' from the ELF symbol table, or None."""
    if hasattr(gdb, "format_address"):
        try:
            s = gdb.format_address(pc)          # "0x1234 <name+5>"
            if "<" in s:
                return s[s.index("<") + 1:s.rindex(">")]
        except (gdb.error, ValueError):
            pass
        return None
    # older gdb: `info symbol`, with demangling off (it would show loom__park as loom.park)
    old = gdb.parameter("print demangle")
    try:
        gdb.execute("set print demangle off", to_string=True)
        out = gdb.execute("info symbol 0x%x" % pc, to_string=True).strip()
    except gdb.error:
        return None
    finally:
        gdb.execute("set print demangle %s" % ("on" if old else "off"), to_string=True)
    if out.startswith("No symbol"):
        return None
    name = out.split(" in section ")[0]
    return name.replace(" + ", "+")


def _describe(pc, is_return):
    """(names, where) for pc: the functions whose code it is in, innermost (inlined) first,
    and " at file:line" or " from library" (empty if unknown)."""
    look = pc - 1 if is_return and pc > 0 else pc
    names = []
    try:
        block = gdb.block_for_pc(look)
    except RuntimeError:
        block = None
    while block is not None and not block.is_global and not block.is_static:
        fn = block.function
        # (gcc may describe part of a function as inlined into itself: shown once)
        if fn is not None and (not names or names[-1] != fn.print_name):
            names.append(fn.print_name)
        block = block.superblock
    if not names:
        names = [_minsym(pc) or "??"]          # no debug info for a function here
    sal = gdb.find_pc_line(look)
    if sal.symtab is not None and sal.line:
        return names, " at %s:%d" % (sal.symtab.filename, sal.line)
    lib = gdb.solib_name(pc)
    return names, " from %s" % lib if lib else ""


def _print_frame(num, pc, is_return):
    """Prints pc as frame num (one frame per inlined function too); returns the next num."""
    names, where = _describe(pc, is_return)
    for i, name in enumerate(names):
        inl = " (inlined)" if i < len(names) - 1 else ""
        gdb.write("#%-3d 0x%016x in %s%s%s\n" % (num, pc, name, inl, where if i == 0 else ""))
        num += 1
    return num


def _created_by(gi):
    """Where gi was created.  Goroutine 1 records no pc (src/proc.c, loom_run: the return
    address of a tail call to loom_run is libc's start code): it was created by loom_run."""
    if gi.created_pc == 0:
        return "loom_run" if gi.id == 1 else "?"
    names, where = _describe(gi.created_pc, True)
    if len(names) > 1:
        return "%s (inlined in %s)%s" % (names[0], names[-1], where)
    return names[0] + where


# ---------------------------------------------------------------- the parked backtrace

def _walk(gi):
    """Prints the backtrace of a goroutine that is not running, from its saved context."""
    g = gi.g
    lo = int(g["stack_lo"])
    hi = lo + int(g["stack_size"])
    sp = int(g["sp"])
    if not (lo <= sp and sp + _CTX_SIZE <= hi):
        gdb.write("(saved stack pointer 0x%x is outside the goroutine's stack 0x%x-0x%x)\n"
                  % (sp, lo, hi))
        return
    num = _print_frame(0, _read_u64(sp + _CTX_RET), True)
    fp = _read_u64(sp + _CTX_RBP)
    frames = 1
    while True:
        if fp == 0:
            return
        if not (lo <= fp and fp + 16 <= hi) or fp & 7:
            gdb.write("(frame pointer 0x%x leaves the goroutine's stack: code without "
                      "frame pointers?)\n" % fp)
            return
        if frames >= _MAX_FRAMES:
            gdb.write("(more frames not shown)\n")
            return
        ret = _read_u64(fp + 8)
        if ret == 0:
            return
        if _read_bytes(ret, len(_SIGRETURN_CODE)) == _SIGRETURN_CODE:
            # fp belongs to the signal handler; its caller is the kernel's signal frame
            gregs = fp + 16 + _UC_GREGS
            gdb.write("#%-3d <signal handler called>\n" % num)
            num += 1
            pc = _read_u64(gregs + 8 * _REG_RIP)
            num = _print_frame(num, pc, False)
            nextfp = _read_u64(gregs + 8 * _REG_RBP)
            frames += 2
            # A leaf without a frame of its own (or one stopped before its prologue) leaves
            # its return address on top of the stack and rbp still the caller's.
            rsp = _read_u64(gregs + 8 * _REG_RSP)
            if lo <= rsp and rsp + 8 <= hi and rsp < nextfp:
                top = _read_u64(rsp)
                if top != pc and _after_call(top) and not (
                        lo <= nextfp and nextfp + 16 <= hi and _read_u64(nextfp + 8) == top):
                    num = _print_frame(num, top, True)
                    frames += 1
            if nextfp <= fp:
                if nextfp:
                    gdb.write("(interrupted frame pointer 0x%x is below the handler's)\n" % nextfp)
                return
            fp = nextfp
            continue
        num = _print_frame(num, ret, True)
        frames += 1
        nextfp = _read_u64(fp)
        if nextfp != 0 and nextfp <= fp:
            gdb.write("(frame pointer chain goes down at 0x%x: stopped)\n" % nextfp)
            return
        fp = nextfp


def _after_call(addr):
    """Does a call instruction end at addr (so that addr is a return address)?"""
    code = _read_bytes(addr - 8, 8)
    if len(code) != 8:
        return False
    if code[3] == 0xE8:                                   # call rel32
        return True
    # call r/m64: [REX] FF /2 ModRM [SIB] [disp8 | disp32], ending at addr
    for start in range(0, 7):
        i = start + 1 if 0x40 <= code[start] <= 0x4F else start
        if i >= 7 or code[i] != 0xFF or (code[i + 1] & 0x38) != 0x10:
            continue
        modrm = code[i + 1]
        mod, rm = modrm >> 6, modrm & 7
        n = i + 2                                         # past ModRM
        if mod != 3 and rm == 4:                          # SIB byte
            if n >= 8:
                continue
            if mod == 0 and (code[n] & 7) == 5:
                n += 4
            n += 1
        if mod == 0 and rm == 5:                          # rip-relative
            n += 4
        elif mod == 1:
            n += 1
        elif mod == 2:
            n += 4
        if n == 8:
            return True
    return False


def _header(gi):
    s = "goroutine %d [%s" % (gi.id, gi.status_name)
    if gi.status_name == "waiting":
        s += ", " + gi.wait_name
    s += "]"
    if gi.name:
        s += " " + gi.name
    return s + ":"


def _backtrace(gi):
    gdb.write(_header(gi) + "\n")
    if gi.on_thread:
        tid = gi.tid()
        th = _thread_for_tid(tid)
        if th is None:
            gdb.write("(runs on LWP %d, which gdb does not know as a thread)\n" % tid)
        else:
            gdb.write("(on thread %d, LWP %d: its backtrace)\n" % (th.num, tid))
            _thread_backtrace(th)
    elif gi.status_name in ("running", "syscall"):
        gdb.write("(being switched on its thread: no saved context to show)\n")
    else:
        _walk(gi)
    if gi.created_pc != 0:                    # as the dump: no line for goroutine 1
        gdb.write("created by %s\n" % _created_by(gi))


def _thread_backtrace(th):
    orig_thread = gdb.selected_thread()
    try:
        orig_frame = gdb.selected_frame()
    except gdb.error:
        orig_frame = None
    th.switch()
    try:
        gdb.execute("backtrace")
    finally:
        if orig_thread is not None and orig_thread.is_valid():
            orig_thread.switch()
            if orig_frame is not None and orig_frame.is_valid():
                orig_frame.select()


# ---------------------------------------------------------------- commands

class InfoGoroutines(gdb.Command):
    """List loom's goroutines: id, status, wait reason or thread, name, creator.
Usage: info goroutines
A `*` marks the goroutine running on the selected thread.  Dead and unused goroutine
records are not shown."""

    def __init__(self):
        super(InfoGoroutines, self).__init__("info goroutines", gdb.COMMAND_STACK,
                                             gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        if arg.strip():
            raise gdb.GdbError("usage: info goroutines")
        gs = [gi for gi in _goroutines() if gi.live]
        if not gs:
            gdb.write("No goroutines (loom_run has not started, or has returned).\n")
            return
        lwp = _selected_lwp()
        gdb.write("  %-6s %-9s %-22s %-16s %s\n"
                  % ("Id", "Status", "Wait / thread", "Name", "Created by"))
        for gi in sorted(gs, key=lambda x: x.id):
            mark = " "
            where = ""
            if gi.status_name == "waiting":
                where = gi.wait_name
            elif gi.on_thread:
                tid = gi.tid()
                th = _thread_for_tid(tid)
                where = "thread %d" % th.num if th is not None else "LWP %d" % tid
                if lwp is not None and tid == lwp:
                    mark = "*"
            gdb.write("%s %-6d %-9s %-22s %-16s %s\n"
                      % (mark, gi.id, gi.status_name, where, gi.name, _created_by(gi)))


class Goroutine(gdb.Command):
    """Backtrace of one loom goroutine, or of all of them.
Usage: goroutine N bt      (N: a goroutine id; any expression, e.g. $1 or a variable)
       goroutine all bt
A goroutine that is not running is shown from the registers it saved when switched out
(frame-pointer walk); a running one by gdb's backtrace of its thread."""

    def __init__(self):
        super(Goroutine, self).__init__("goroutine", gdb.COMMAND_STACK,
                                        gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg, from_tty):
        argv = gdb.string_to_argv(arg)
        if len(argv) != 2 or argv[1] not in ("bt", "backtrace"):
            raise gdb.GdbError("usage: goroutine N bt | goroutine all bt")
        gs = _goroutines()
        if argv[0] == "all":
            first = True
            for gi in sorted((gi for gi in gs if gi.live), key=lambda x: x.id):
                if not first:
                    gdb.write("\n")
                first = False
                try:
                    _backtrace(gi)
                except gdb.GdbError as e:       # one unreadable goroutine: go on
                    gdb.write("%s\n" % e)
            if first:
                gdb.write("No goroutines (loom_run has not started, or has returned).\n")
            return
        _backtrace(_find(gs, argv[0]))


def _goid(expr):
    try:
        return int(gdb.parse_and_eval(expr))
    except (gdb.error, ValueError) as e:
        raise _LoomError("loom: goroutine id %r: %s" % (expr, e))


def _find(gs, expr):
    goid = _goid(expr)
    dead = False
    for gi in gs:
        if gi.id == goid:
            if gi.live:
                return gi
            dead = True
    if dead:
        raise _LoomError("loom: goroutine %d has exited" % goid)
    raise _LoomError("loom: no goroutine %d (see `info goroutines`)" % goid)


class LoomG(gdb.Function):
    """$loom_g(N): the record (struct loom__g *) of goroutine N."""

    def __init__(self):
        super(LoomG, self).__init__("loom_g")

    def invoke(self, goid):
        return _find(_goroutines(), str(int(goid))).g.address


InfoGoroutines()
Goroutine()
LoomG()
