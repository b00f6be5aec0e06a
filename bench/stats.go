package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// percentile is the nearest-rank percentile (p in 0..100) of xs.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	k = min(max(k, 0), len(s)-1)
	return s[k]
}

func median(xs []time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// pairedRatios is the median of per-pair ratios a[i]/b[i]: pairs taken
// back to back share the machine's momentary load, so their ratio is
// steadier than a ratio of medians.
func pairedRatio(a, b []time.Duration) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, float64(a[i])/float64(b[i]))
		}
	}
	if len(rs) == 0 {
		return math.NaN()
	}
	sort.Float64s(rs)
	n := len(rs)
	if n%2 == 1 {
		return rs[n/2]
	}
	return (rs[n/2-1] + rs[n/2]) / 2
}

// ms formats a duration in milliseconds with sensible precision.
func ms(d time.Duration) string {
	f := float64(d) / 1e6
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// row is one line of the table.
type row struct {
	Section  string // "1 hook"
	Measure  string
	Baseline string // the named baseline's figure, or ""
	Certbus  string
	Ratio    string // certbus / baseline
	Target   string
	Verdict  string // met, MISSED, or "" (information)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func ratioStr(r float64) string {
	if math.IsNaN(r) {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

var tableHeader = row{"#", "measure", "baseline", "certbus", "ratio", "target", "verdict"}

// markdownTable renders rows as a Markdown table padded to align in a
// terminal too.
func markdownTable(rows []row) string {
	all := append([]row{tableHeader}, rows...)
	cells := func(r row) []string {
		return []string{r.Section, r.Measure, r.Baseline, r.Certbus, r.Ratio, r.Target, r.Verdict}
	}
	width := make([]int, 7)
	for _, r := range all {
		for i, c := range cells(r) {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(cs []string) {
		b.WriteString("|")
		for i, c := range cs {
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)) + " |")
		}
		b.WriteString("\n")
	}
	line(cells(all[0]))
	sep := make([]string, 7)
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range all[1:] {
		line(cells(r))
	}
	return b.String()
}
