// Package chart draws line charts as standalone SVG documents, without
// dependencies: goim-bench report uses it for the benchmark charts
// (latency percentiles against rate, deliveries/s against room size).
//
// A Chart has one or more Series of (x, y) points; each axis is linear
// (starting at 0) or logarithmic (powers of ten). Every series is one
// <g class="series" data-series="NAME"> group holding a polyline and one
// circle per point (with a <title> tooltip), so that the output can be
// checked structurally.
package chart

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Point is one data point.
type Point struct {
	X, Y float64
}

// Series is a named line.
type Series struct {
	Name   string
	Points []Point
}

// Chart is a line chart. The zero value of the sizes uses the defaults.
type Chart struct {
	Title  string
	XLabel string
	YLabel string
	// XLog and YLog make an axis logarithmic (non-positive values are
	// left out).
	XLog, YLog bool
	// Width and Height in pixels. Defaults 760 and 440.
	Width, Height int
	Series        []Series
}

// Layout constants (pixels).
const (
	defaultWidth  = 760
	defaultHeight = 440
	marginLeft    = 80
	marginRight   = 170 // legend
	marginTop     = 44
	marginBottom  = 56
)

// palette holds the series colours, in order (colour-blind safe).
var palette = []string{"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"}

// axis maps data values to pixels.
type axis struct {
	log    bool
	lo, hi float64 // data range (log10 of it for a log axis)
	p0, p1 float64 // pixel range
}

func (a axis) pos(v float64) float64 {
	if a.log {
		v = math.Log10(v)
	}
	if a.hi == a.lo {
		return (a.p0 + a.p1) / 2
	}
	return a.p0 + (v-a.lo)/(a.hi-a.lo)*(a.p1-a.p0)
}

// ticks returns the tick values (data units) of the axis.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		// 1-2-5 steps over at most three decades, powers of ten beyond.
		mults := []float64{1, 2, 5}
		if a.hi-a.lo > 3 {
			mults = []float64{1}
		}
		for e := math.Floor(a.lo + 1e-9); e <= a.hi; e++ {
			for _, m := range mults {
				v := m * math.Pow(10, e)
				if l := math.Log10(v); l >= a.lo-1e-9 && l <= a.hi+1e-9 {
					out = append(out, v)
				}
			}
		}
		return out
	}
	step := niceStep((a.hi - a.lo) / 5)
	for v := a.lo; v <= a.hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

// step125 returns the largest 1, 2 or 5 times a power of ten at most v
// (up: the smallest at least v). v > 0.
func step125(v float64, up bool) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	steps := []float64{1, 2, 5, 10}
	if up {
		for _, m := range steps {
			if m*p >= v*(1-1e-12) {
				return m * p
			}
		}
		return 10 * p
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i]*p <= v*(1+1e-12) {
			return steps[i] * p
		}
	}
	return p
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	switch f := x / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	default:
		return 10 * p
	}
}

// usable reports whether v can be drawn on an axis.
func usable(v float64, log bool) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && (!log || v > 0)
}

// newAxis fits an axis to values.
func newAxis(values []float64, log bool, p0, p1 float64) axis {
	a := axis{log: log, p0: p0, p1: p1}
	if len(values) == 0 {
		a.lo, a.hi = 0, 1 // 0..1, or 1..10 on a log axis
		return a
	}
	lo, hi := slices.Min(values), slices.Max(values)
	if log {
		// The range ends on 1-2-5 values around the data.
		a.lo, a.hi = math.Log10(step125(lo, false)), math.Log10(step125(hi, true))
		if a.hi <= a.lo {
			a.hi = a.lo + 1
		}
		return a
	}
	lo = min(lo, 0)
	if hi <= lo {
		hi = lo + max(math.Abs(lo), 1)
	}
	step := niceStep((hi - lo) / 5)
	a.lo, a.hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	return a
}

// FormatNumber renders an axis or tooltip value compactly: 950, 1.5k,
// 2M, 0.25.
func FormatNumber(v float64) string {
	abs := math.Abs(v)
	trim := func(f float64, suffix string) string {
		return strconv.FormatFloat(f, 'f', -1, 64) + suffix
	}
	switch {
	case abs >= 1e9:
		return trim(round3(v/1e9), "G")
	case abs >= 1e6:
		return trim(round3(v/1e6), "M")
	case abs >= 1e4:
		return trim(round3(v/1e3), "k")
	case abs >= 1 || abs == 0:
		return trim(round3(v), "")
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func round3(v float64) float64 {
	if v == 0 {
		return 0
	}
	// three significant digits
	p := math.Pow(10, 2-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// SVG renders the chart as a standalone SVG document.
func (c *Chart) SVG() []byte {
	var b bytes.Buffer
	_ = c.WriteSVG(&b)
	return b.Bytes()
}

// WriteSVG writes the chart as a standalone SVG document to w.
func (c *Chart) WriteSVG(w io.Writer) error {
	width, height := cmp.Or(c.Width, defaultWidth), cmp.Or(c.Height, defaultHeight)
	left, right := float64(marginLeft), float64(width-marginRight)
	top, bottom := float64(marginTop), float64(height-marginBottom)

	// The points each series draws: usable on both axes, sorted by x.
	drawn := make([][]Point, len(c.Series))
	var xs, ys []float64
	for i, s := range c.Series {
		for _, p := range s.Points {
			if usable(p.X, c.XLog) && usable(p.Y, c.YLog) {
				drawn[i] = append(drawn[i], p)
				xs, ys = append(xs, p.X), append(ys, p.Y)
			}
		}
		slices.SortStableFunc(drawn[i], func(a, b Point) int { return cmp.Compare(a.X, b.X) })
	}
	xa, ya := newAxis(xs, c.XLog, left, right), newAxis(ys, c.YLog, bottom, top)

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", esc(c.Title))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text class="title" x="%s" y="24" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", f1(float64(width)/2), esc(c.Title))

	// Grid and ticks.
	b.WriteString(`<g class="axes" stroke="#cccccc" stroke-width="1">` + "\n")
	for _, t := range xa.ticks() {
		x := xa.pos(t)
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", f1(x), f1(top), f1(x), f1(bottom))
	}
	for _, t := range ya.ticks() {
		y := ya.pos(t)
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", f1(left), f1(y), f1(right), f1(y))
	}
	fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#333333"/>`+"\n", f1(left), f1(top), f1(right-left), f1(bottom-top))
	b.WriteString("</g>\n")
	b.WriteString(`<g class="tick-labels" fill="#333333">` + "\n")
	for _, t := range xa.ticks() {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f1(xa.pos(t)), f1(bottom+16), esc(FormatNumber(t)))
	}
	for _, t := range ya.ticks() {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", f1(left-6), f1(ya.pos(t)+4), esc(FormatNumber(t)))
	}
	b.WriteString("</g>\n")
	xl, yl := c.XLabel, c.YLabel
	if c.XLog {
		xl += " (log scale)"
	}
	if c.YLog {
		yl += " (log scale)"
	}
	fmt.Fprintf(&b, `<text class="x-label" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", f1((left+right)/2), f1(float64(height)-14), esc(xl))
	fmt.Fprintf(&b, `<text class="y-label" x="0" y="0" text-anchor="middle" transform="translate(18 %s) rotate(-90)">%s</text>`+"\n", f1((top+bottom)/2), esc(yl))
	if len(xs) == 0 {
		fmt.Fprintf(&b, `<text class="no-data" x="%s" y="%s" text-anchor="middle" fill="#999999">no data</text>`+"\n", f1((left+right)/2), f1((top+bottom)/2))
	}

	// Series and legend.
	for i, s := range c.Series {
		color := palette[i%len(palette)]
		fmt.Fprintf(&b, `<g class="series" data-series="%s" stroke="%s" fill="%s">`+"\n", esc(s.Name), color, color)
		if len(drawn[i]) > 0 {
			pts := make([]string, len(drawn[i]))
			for j, p := range drawn[i] {
				pts[j] = f1(xa.pos(p.X)) + "," + f1(ya.pos(p.Y))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke-width="2" points="%s"/>`+"\n", strings.Join(pts, " "))
			for _, p := range drawn[i] {
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3.5"><title>%s: %s at %s</title></circle>`+"\n",
					f1(xa.pos(p.X)), f1(ya.pos(p.Y)), esc(s.Name), esc(FormatNumber(p.Y)), esc(FormatNumber(p.X)))
			}
		}
		ly := top + 10 + float64(i)*20
		fmt.Fprintf(&b, `<line class="legend" x1="%s" y1="%s" x2="%s" y2="%s" stroke-width="2"/>`+"\n", f1(right+14), f1(ly), f1(right+38), f1(ly))
		fmt.Fprintf(&b, `<text class="legend" x="%s" y="%s" stroke="none">%s</text>`+"\n", f1(right+44), f1(ly+4), esc(s.Name))
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
