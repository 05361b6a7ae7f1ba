package chart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// svgSeries is what a test reads back from a chart: the series groups in
// order, with the number of points of each polyline and circles.
type svgSeries struct {
	name     string
	polyline int // points of the polyline (0: none)
	circles  int
}

// parseSVG checks that b is well-formed XML with an <svg> root and returns
// its series groups and its texts.
func parseSVG(t *testing.T, b []byte) ([]svgSeries, []string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	var series []svgSeries
	var texts []string
	depth, seriesDepth := 0, -1
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				root = el.Name.Local
			}
			attr := func(name string) string {
				for _, a := range el.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch {
			case el.Name.Local == "g" && attr("class") == "series":
				series = append(series, svgSeries{name: attr("data-series")})
				seriesDepth = depth
			case seriesDepth > 0 && el.Name.Local == "polyline":
				series[len(series)-1].polyline = len(strings.Fields(attr("points")))
			case seriesDepth > 0 && el.Name.Local == "circle":
				series[len(series)-1].circles++
			}
		case xml.EndElement:
			if depth == seriesDepth {
				seriesDepth = -1
			}
			depth--
		case xml.CharData:
			if s := strings.TrimSpace(string(el)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return series, texts
}

func TestSVGStructure(t *testing.T) {
	c := Chart{
		Title: "latency <p50/p99> & rate", XLabel: "messages/s", YLabel: "ms", XLog: true, YLog: true,
		Series: []Series{
			{Name: "p50", Points: []Point{{1000, 1.5}, {100, 0.8}, {6000, 3}}},
			{Name: "p99", Points: []Point{{100, 4}, {1000, 9}, {6000, 53}}},
			{Name: "p99.9", Points: []Point{{100, 7}, {1000, 20}, {6000, 74}, {0, 5}, {math.NaN(), 1}}},
		},
	}
	series, texts := parseSVG(t, c.SVG())
	if len(series) != 3 {
		t.Fatalf("%d series, want 3: %+v", len(series), series)
	}
	for i, want := range []string{"p50", "p99", "p99.9"} {
		s := series[i]
		// The non-positive and NaN x of p99.9 cannot be drawn on a log axis.
		if s.name != want || s.polyline != 3 || s.circles != 3 {
			t.Errorf("series %d = %+v, want %s with 3 points", i, s, want)
		}
	}
	for _, want := range []string{"latency <p50/p99> & rate", "messages/s (log scale)", "ms (log scale)", "p50", "p99.9"} {
		if !slices.Contains(texts, want) {
			t.Errorf("no text %q in %q", want, texts)
		}
	}
}

func TestSVGLinearAndEmpty(t *testing.T) {
	c := Chart{Title: "deliveries", Series: []Series{
		{Name: "10 pushes/s", Points: []Point{{15000, 146000}}},
		{Name: "100 pushes/s", Points: nil},
	}}
	series, _ := parseSVG(t, c.SVG())
	if len(series) != 2 || series[0].circles != 1 || series[1].polyline != 0 {
		t.Fatalf("series %+v", series)
	}
	empty := Chart{Title: "nothing"}
	series, texts := parseSVG(t, empty.SVG())
	if len(series) != 0 || !slices.Contains(texts, "no data") {
		t.Fatalf("empty chart: series %+v, texts %q", series, texts)
	}
}

func TestAxisTicks(t *testing.T) {
	lin := newAxis([]float64{3, 97}, false, 0, 100)
	ticks := lin.ticks()
	if ticks[0] != 0 || ticks[len(ticks)-1] < 97 {
		t.Errorf("linear ticks %v do not cover 0..97", ticks)
	}
	for _, v := range []float64{0, 97} {
		if p := lin.pos(v); p < 0 || p > 100 {
			t.Errorf("linear pos(%g) = %g outside the pixel range", v, p)
		}
	}
	// Over more than three decades: powers of ten, the ends on 1-2-5 values.
	lg := newAxis([]float64{3, 25000}, true, 0, 100)
	if got := lg.ticks(); !slices.Equal(got, []float64{10, 100, 1000, 10000}) {
		t.Errorf("log ticks %v", got)
	}
	if math.Abs(lg.pos(2)) > 1e-9 || math.Abs(lg.pos(50000)-100) > 1e-9 {
		t.Errorf("log axis ends: pos(2) = %g, pos(50000) = %g", lg.pos(2), lg.pos(50000))
	}
	// Within three decades: 1-2-5 ticks.
	lg = newAxis([]float64{6000, 25000}, true, 0, 100)
	if got := lg.ticks(); !slices.Equal(got, []float64{5000, 10000, 20000, 50000}) {
		t.Errorf("log ticks %v", got)
	}
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 950: "950", 1500: "1500", 15000: "15k", 2_000_000: "2M", 1_457_416: "1.46M", 0.25: "0.25", 12.34: "12.3"} {
		if got := FormatNumber(v); got != want {
			t.Errorf("FormatNumber(%g) = %q, want %q", v, got, want)
		}
	}
}
