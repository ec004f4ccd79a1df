#!/usr/bin/env python3
"""loom-trace-png.py TRACE OUT.png [--width W] — draw a LOOM_TRACE file as a PNG timeline.

One row per P ("P0", "P1", ...) with the goroutines' run slices, coloured by goroutine id
(a stable hash into a palette, so a goroutine keeps its colour across Ps and runs) and
labelled "G<id>" where there is room; small marks above the slices for steals (black) and
preemptions (red).  Below, a thinner row per thread ("M1", ...) with its idle slices (grey)
and blocking calls (orange).  A time axis in ms at the bottom, a title and a legend.  For the
README and for bug reports: readable at the default 1600 px width.

Python 3 standard library only: the text is drawn with the 5x7 bitmap font below and the
PNG is written with zlib and struct.  Malformed events are skipped (tools/loom-trace-check.py
is the one that judges a trace).
"""
import argparse
import json
import math
import os
import struct
import sys
import zlib

# ---------------------------------------------------------------- font
# 5x7 glyphs, each row 5 pixels ('#' on); groups of glyphs laid side by side.
_FONT_GROUPS = [
    ("0123456789", """
.###. ..#.. .###. ##### ...#. ##### ..##. ##### .###. .###.
#...# .##.. #...# ...#. ..##. #.... .#... ....# #...# #...#
#..## ..#.. ....# ..#.. .#.#. ####. #.... ...#. #...# #...#
#.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#.. .###. .####
##..# ..#.. ..#.. ....# ##### ....# #...# .#... #...# ....#
#...# ..#.. .#... #...# ...#. #...# #...# .#... #...# ...#.
.###. .###. ##### .###. ...#. .###. .###. .#... .###. .##..
"""),
    ("ABCDEFGHIJKLM", """
.###. ####. .###. ###.. ##### ##### .###. #...# .###. ..### #...# #.... #...#
#...# #...# #...# #..#. #.... #.... #...# #...# ..#.. ...#. #..#. #.... ##.##
#...# #...# #.... #...# #.... #.... #.... #...# ..#.. ...#. #.#.. #.... #.#.#
##### ####. #.... #...# ####. ####. #.### ##### ..#.. ...#. ##... #.... #.#.#
#...# #...# #.... #...# #.... #.... #...# #...# ..#.. ...#. #.#.. #.... #...#
#...# #...# #...# #..#. #.... #.... #...# #...# ..#.. #..#. #..#. #.... #...#
#...# ####. .###. ###.. ##### #.... .#### #...# .###. .##.. #...# ##### #...#
"""),
    ("NOPQRSTUVWXYZ", """
#...# .###. ####. .###. ####. .#### ##### #...# #...# #...# #...# #...# #####
#...# #...# #...# #...# #...# #.... ..#.. #...# #...# #...# #...# #...# ....#
##..# #...# #...# #...# #...# #.... ..#.. #...# #...# #...# .#.#. .#.#. ...#.
#.#.# #...# ####. #...# ####. .###. ..#.. #...# #...# #.#.# ..#.. ..#.. ..#..
#..## #...# #.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.# .#.#. ..#.. .#...
#...# #...# #.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.# #...# ..#.. #....
#...# .###. #.... .##.# #...# ####. ..#.. .###. ..#.. .#.#. #...# ..#.. #####
"""),
    ("abcdefghijklm", """
..... #.... ..... ....# ..... ..##. ..... #.... ..#.. ...#. #.... .##.. .....
..... #.... ..... ....# ..... .#..# .#### #.... ..... ..... #.... ..#.. .....
.###. #.##. .###. .##.# .###. .#... #...# #.##. .##.. ..##. #..#. ..#.. ##.#.
....# ##..# #.... #..## #...# ###.. #...# ##..# ..#.. ...#. #.#.. ..#.. #.#.#
.#### #...# #.... #...# ##### .#... .#### #...# ..#.. ...#. ##... ..#.. #.#.#
#...# #...# #...# #...# #.... .#... ....# #...# ..#.. #..#. #.#.. ..#.. #...#
.#### ####. .###. .#### .###. .#... .###. #...# .###. .##.. #..#. .###. #...#
"""),
    ("nopqrstuvwxyz", """
..... ..... ..... ..... ..... ..... .#... ..... ..... ..... ..... ..... .....
..... ..... ..... ..... ..... ..... .#... ..... ..... ..... ..... ..... .....
#.##. .###. ####. .##.# #.##. .###. ###.. #...# #...# #...# #...# #...# #####
##..# #...# #...# #..## ##..# #.... .#... #...# #...# #...# .#.#. #...# ...#.
#...# #...# ####. .#### #.... .###. .#... #...# #...# #.#.# ..#.. .#### ..#..
#...# #...# #.... ....# #.... ....# .#..# #..## .#.#. #.#.# .#.#. ....# .#...
#...# .###. #.... ....# #.... ####. ..##. .##.# ..#.. .#.#. #...# .###. #####
"""),
    (" .,:-_()/%#<>=", """
..... ..... ..... ..... ..... ..... ...#. .#... ..... ##... .#.#. ...#. .#... .....
..... ..... ..... .##.. ..... ..... ..#.. ..#.. ....# ##..# .#.#. ..#.. ..#.. .....
..... ..... ..... .##.. ..... ..... .#... ...#. ...#. ...#. ##### .#... ...#. #####
..... ..... ..... ..... ##### ..... .#... ...#. ..#.. ..#.. .#.#. #.... ....# .....
..... ..... .##.. .##.. ..... ..... .#... ...#. .#... .#... ##### .#... ...#. #####
..... .##.. ..#.. .##.. ..... ..... ..#.. ..#.. #.... #..## .#.#. ..#.. ..#.. .....
..... .##.. .#... ..... ..... ##### ...#. .#... ..... ...## .#.#. ...#. .#... .....
"""),
    ("+[]'\"!?*", """
..... .###. .###. ..#.. .#.#. ..#.. .###. .....
..#.. .#... ...#. ..#.. .#.#. ..#.. #...# ..#..
..#.. .#... ...#. .#... .#.#. ..#.. ....# #.#.#
##### .#... ...#. ..... ..... ..#.. ...#. .###.
..#.. .#... ...#. ..... ..... ..#.. ..#.. #.#.#
..#.. .#... ...#. ..... ..... ..... ..... ..#..
..... .###. .###. ..... ..... ..#.. ..#.. .....
"""),
]


# letters with descenders: 9 rows, the last two below the baseline
_FONT_GROUPS.append(("gjpqy", """
..... ...#. ..... ..... .....
..... ..... ..... ..... .....
.#### ..##. ####. .#### #...#
#...# ...#. #...# #...# #...#
#...# ...#. #...# #...# #...#
#...# ...#. #...# #...# #...#
.#### ...#. ####. .#### .####
....# #..#. #.... ....# ....#
.###. .##.. #.... ....# .###.
"""))


def _build_font():
    font = {}
    for chars, block in _FONT_GROUPS:
        rows = [r.split() for r in block.strip("\n").split("\n")]
        assert len(rows) in (7, 9), chars
        for i, ch in enumerate(chars):
            glyph = [row[i] for row in rows]
            assert all(len(g) == 5 for g in glyph), ch
            font[ch] = [[x for x, c in enumerate(g) if c == "#"] for g in glyph]
    return font


FONT = _build_font()
GLYPH_W, GLYPH_H, ADVANCE = 5, 7, 6

# ---------------------------------------------------------------- colours
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
TEXT = (40, 40, 40)
GRID = (225, 225, 225)
ROW_BG = (246, 246, 246)
AXIS = (90, 90, 90)
IDLE = (200, 200, 200)
SYSCALL = (235, 140, 40)
STEAL = (0, 0, 0)
PREEMPT = (220, 30, 30)
# goroutine colours: distinguishable mid tones, dark text stays readable on each
PALETTE = [
    (102, 194, 165), (252, 141, 98), (141, 160, 203), (231, 138, 195), (166, 216, 84),
    (255, 217, 47), (229, 196, 148), (128, 177, 211), (251, 128, 114), (190, 186, 218),
    (253, 180, 98), (179, 222, 105), (252, 205, 229), (188, 128, 189), (204, 235, 197),
    (255, 237, 111), (141, 211, 199), (158, 202, 225), (199, 233, 180), (244, 165, 130),
]


def g_colour(g):
    h = (g * 2654435761) & 0xFFFFFFFF          # Knuth's multiplicative hash: stable
    h ^= h >> 15
    return PALETTE[h % len(PALETTE)]


def darker(c, f=0.65):
    return tuple(int(v * f) for v in c)


# ---------------------------------------------------------------- canvas
class Canvas:
    def __init__(self, w, h, bg=WHITE):
        self.w, self.h = w, h
        self.rows = [bytearray(bytes(bg) * w) for _ in range(h)]

    def rect(self, x0, y0, x1, y1, c):
        """fills [x0, x1) x [y0, y1), clipped"""
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        y0, y1 = max(0, int(y0)), min(self.h, int(y1))
        if x0 >= x1 or y0 >= y1:
            return
        fill = bytes(c) * (x1 - x0)
        for y in range(y0, y1):
            self.rows[y][x0 * 3:x1 * 3] = fill

    def text(self, x, y, s, c=TEXT, scale=1):
        """draws s with its top left corner at (x, y); returns the x after it"""
        for ch in s:
            glyph = FONT.get(ch) or FONT.get(ch.upper()) or FONT["?"]
            for r, xs in enumerate(glyph):
                for gx in xs:
                    self.rect(x + gx * scale, y + r * scale, x + (gx + 1) * scale, y + (r + 1) * scale, c)
            x += ADVANCE * scale
        return x

    @staticmethod
    def text_w(s, scale=1):
        return (len(s) * ADVANCE - 1) * scale if s else 0

    def png(self):
        raw = bytearray()
        for row in self.rows:
            raw.append(0)                      # filter: none
            raw += row

        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        ihdr = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)   # 8-bit RGB
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
                + chunk(b"IEND", b""))


# ---------------------------------------------------------------- trace
def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load(path):
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8", "replace"))
    evs = doc.get("traceEvents") if isinstance(doc, dict) else None
    if not isinstance(evs, list):
        raise ValueError('no "traceEvents" list')
    runs, mslices, marks = [], [], []
    ps, ms = set(), set()
    for e in evs:
        if not isinstance(e, dict):
            continue
        ph, pid, tid = e.get("ph"), e.get("pid"), e.get("tid")
        if not isinstance(tid, int) or isinstance(tid, bool) or pid not in (1, 2):
            continue
        if ph == "M":
            (ps if pid == 1 else ms).add(tid)
            continue
        ts = e.get("ts")
        if not num(ts):
            continue
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        if ph == "X" and num(e.get("dur")) and e["dur"] >= 0:
            if pid == 1 and e.get("cat") == "run":
                g = args.get("g")
                runs.append((tid, ts, ts + e["dur"], g if isinstance(g, int) else 0))
                ps.add(tid)
            elif pid == 2 and e.get("cat") in ("park", "syscall"):
                mslices.append((tid, ts, ts + e["dur"], e["cat"]))
                ms.add(tid)
        elif ph == "i":
            if pid == 1:
                ps.add(tid)
                if e.get("name") in ("steal", "preempt"):
                    marks.append((tid, ts, e["name"]))
            else:
                ms.add(tid)
    return runs, mslices, marks, sorted(ps), sorted(ms)


def nice_step(span, target):
    """a 1, 2, 5 x 10^k step giving about `target` intervals over span (> 0)"""
    raw = span / max(1, target)
    k = math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        step = m * 10 ** k
        if step >= raw:
            return step
    return 10 ** (k + 1)


def fmt_ms(v, step):
    dec = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return "%.*f" % (dec, v)


def render(path, width):
    runs, mslices, marks, ps, ms = load(path)
    t1 = max([r[2] for r in runs] + [s[2] for s in mslices] + [m[1] for m in marks] + [0.0])
    t0 = min([r[1] for r in runs] + [s[1] for s in mslices] + [m[1] for m in marks] + [0.0])
    span = max(t1 - t0, 1.0)                                   # µs

    S = 2                                                      # text scale for labels
    left = 12 + Canvas.text_w("P%d" % max(ps + ms + [0]) if ps or ms else "P0", S) + 14
    left = max(left, 60)
    right = 24
    plot_w = max(50, width - left - right)
    p_h, p_gap, m_h, m_gap = 34, 4, 14, 3
    title_h = 12 + GLYPH_H * S + 12
    axis_h = 8 + GLYPH_H * S + 16
    legend = ((g_colour(1), "goroutine run (colour: id)"), (IDLE, "thread idle"),
              (SYSCALL, "blocking call"), (STEAL, "steal"), (PREEMPT, "preempt"))
    legend_pos, lx, ly = [], left, 0                     # wrapped to the width
    for colour, lab in legend:
        w = 20 + Canvas.text_w(lab, S)
        if lx > left and lx + w > width - 8:
            lx, ly = left, ly + GLYPH_H * S + 10
        legend_pos.append((lx, ly, colour, lab))
        lx += w + 24
    legend_h = ly + GLYPH_H * S + 16
    sep = 14 if ms else 0
    height = (title_h + len(ps) * (p_h + p_gap) + sep + len(ms) * (m_h + m_gap) + axis_h + legend_h + 8)
    cv = Canvas(width, height)

    def X(t):
        return left + (t - t0) * plot_w / span

    # title
    ngo = len({r[3] for r in runs})
    title = "loom trace  %s  %.3f ms  %d goroutines  %d Ps  %d Ms" % (
        os.path.basename(path), span / 1000.0, ngo, len(ps), len(ms))
    while Canvas.text_w(title, S) > width - 24 and len(title) > 10:
        title = title[:-4] + "..."
    cv.text(12, 12, title, BLACK, S)

    # row positions
    prow, y = {}, title_h
    for p in ps:
        prow[p] = y
        y += p_h + p_gap
    y += sep
    mrow = {}
    for m in ms:
        mrow[m] = y
        y += m_h + m_gap
    rows_end = y

    # grid lines at the ticks
    step = nice_step(span / 1000.0, max(2, plot_w // 170))     # ms
    ticks = []
    v = math.ceil((t0 / 1000.0) / step) * step
    while v <= t1 / 1000.0 + step * 1e-9:
        ticks.append(v)
        v += step
    for v in ticks:
        x = int(X(v * 1000.0))
        cv.rect(x, title_h - 4, x + 1, rows_end, GRID)

    # P rows
    for p in ps:
        y0 = prow[p]
        cv.rect(left, y0, left + plot_w, y0 + p_h, ROW_BG)
        lab = "P%d" % p
        cv.text(left - 10 - Canvas.text_w(lab, S), y0 + (p_h - GLYPH_H * S) // 2, lab, TEXT, S)
    painted = {}                                               # per P: x up to which a 1-px slice was drawn
    for (p, a, b, g) in sorted(runs, key=lambda r: r[1]):
        y0 = prow[p] + 4
        x0, x1 = X(a), X(b)
        xa, xb = int(x0), max(int(x0) + 1, int(math.ceil(x1)))
        if xb - xa == 1:                                       # many tiny slices: one per pixel
            if xa < painted.get(p, -1):
                continue
            painted[p] = xb
        col = g_colour(g)
        cv.rect(xa, y0, xb, y0 + p_h - 4, col)
        if xb - xa >= 4:
            cv.rect(xa, y0, xa + 1, y0 + p_h - 4, darker(col))
        lab = "G%d" % g
        for sc in (2, 1):
            if Canvas.text_w(lab, sc) + 6 <= xb - xa:
                cv.text(xa + 3, y0 + (p_h - 4 - GLYPH_H * sc) // 2, lab, TEXT, sc)
                break
    for (p, t, name) in marks:
        x = int(X(t))
        c = STEAL if name == "steal" else PREEMPT
        y0 = prow[p]
        cv.rect(x - 2, y0, x + 3, y0 + 2, c)
        cv.rect(x - 1, y0 + 2, x + 2, y0 + 4, c)
        cv.rect(x, y0 + 4, x + 1, y0 + 6, c)

    # M rows
    for m in ms:
        y0 = mrow[m]
        cv.rect(left, y0, left + plot_w, y0 + m_h, ROW_BG)
        lab = "M%d" % m
        cv.text(left - 10 - Canvas.text_w(lab, S), y0 + (m_h - GLYPH_H * S) // 2, lab, TEXT, S)
    for (m, a, b, cat) in mslices:
        xa = int(X(a))
        xb = max(xa + 1, int(math.ceil(X(b))))
        y0 = mrow[m]
        cv.rect(xa, y0 + 2, xb, y0 + m_h - 2, IDLE if cat == "park" else SYSCALL)

    # time axis
    ya = rows_end + 2
    cv.rect(left, ya, left + plot_w, ya + 1, AXIS)
    last_end = -10 ** 9
    for i, v in enumerate(ticks):
        x = int(X(v * 1000.0))
        cv.rect(x, ya, x + 1, ya + 6, AXIS)
        lab = fmt_ms(v, step) + (" ms" if i == 0 or i == len(ticks) - 1 else "")
        w = Canvas.text_w(lab, S)
        lx = min(max(x - w // 2, 0), width - w - 2)
        if lx > last_end + 8:
            cv.text(lx, ya + 9, lab, TEXT, S)
            last_end = lx + w

    # legend
    yl = ya + axis_h
    for (x, dy, colour, lab) in legend_pos:
        cv.rect(x, yl + dy, x + 14, yl + dy + GLYPH_H * S, colour)
        cv.text(x + 20, yl + dy, lab, TEXT, S)
    return cv


def main(argv):
    ap = argparse.ArgumentParser(prog="loom-trace-png.py", description="Draw a LOOM_TRACE file as a PNG timeline.")
    ap.add_argument("trace")
    ap.add_argument("out", help="the PNG file to write")
    ap.add_argument("--width", type=int, default=1600, help="image width in pixels (default 1600)")
    a = ap.parse_args(argv)
    if a.width < 200 or a.width > 20000:
        ap.error("--width must be within 200..20000")
    try:
        cv = render(a.trace, a.width)
    except (OSError, ValueError) as e:
        print("loom-trace-png: %s: %s" % (a.trace, e), file=sys.stderr)
        return 1
    data = cv.png()
    try:
        with open(a.out, "wb") as f:
            f.write(data)
    except OSError as e:
        print("loom-trace-png: %s: %s" % (a.out, e), file=sys.stderr)
        return 1
    print("loom-trace-png: wrote %s (%dx%d)" % (a.out, cv.w, cv.h))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
