package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// benchstatModule is the benchstat the bench runs when none is installed
// (golang.org/x/perf has no tagged releases: a pinned pseudo-version).
const benchstatModule = "golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

var benchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// goBench is one package's micro-benchmarks and how benchstat compares
// their sub-benchmarks.
type goBench struct {
	pkg    string
	col    string // benchstat -col
	filter string // benchstat -filter
}

// benchGo runs the Go benchmarks of validation and of the signal path
// -count times, keeps benchstat's comparison (RSA-2048 against ECDSA-P256;
// 1 subscriber against 10, 100, 1,000) in bench/out/, and turns medians
// into table rows.
func benchGo(repo string, o options) ([]row, string, error) {
	out := filepath.Join(repo, "bench", "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, "", err
	}
	medians := map[string]time.Duration{}
	var stat strings.Builder
	for _, gb := range []goBench{{"./internal/certs", "/key", "*"}, {"./signals", "/subs", ".name:Fanout"}} {
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem",
			"-count", strconv.Itoa(o.gobenchN), "-benchtime", o.gobenchTime, gb.pkg)
		cmd.Dir = repo
		raw, err := cmd.CombinedOutput()
		if err != nil {
			return nil, "", fmt.Errorf("go test -bench %s: %v\n%s", gb.pkg, err, raw)
		}
		file := filepath.Join(out, strings.ReplaceAll(strings.TrimPrefix(gb.pkg, "./"), "/", "-")+".txt")
		if err := os.WriteFile(file, raw, 0o644); err != nil {
			return nil, "", err
		}
		samples := map[string][]time.Duration{}
		for _, l := range strings.Split(string(raw), "\n") {
			if m := benchLineRE.FindStringSubmatch(l); m != nil {
				f, _ := strconv.ParseFloat(m[2], 64)
				samples[m[1]] = append(samples[m[1]], time.Duration(f))
			}
		}
		for k, v := range samples {
			medians[k] = median(v)
		}
		s, err := benchstat(repo, file, "-col", gb.col, "-filter", gb.filter)
		if err != nil {
			logf("gobench: benchstat: %v", err)
			s = err.Error() + "\n"
		}
		fmt.Fprintf(&stat, "$ benchstat -col %s -filter '%s' %s\n%s\n", gb.col, gb.filter, filepath.Base(file), s)
	}
	statFile := filepath.Join(out, "benchstat.txt")
	if err := os.WriteFile(statFile, []byte(stat.String()), 0o644); err != nil {
		return nil, "", err
	}
	logf("gobench: benchstat comparisons in %s", statFile)

	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
	pair := func(measure, a, b string) row {
		ma, mb := medians[a], medians[b]
		r := row{Section: "6 gobench", Measure: measure, Baseline: us(ma), Certbus: us(mb), Ratio: "-"}
		if ma > 0 && mb > 0 {
			r.Ratio = ratioStr(float64(mb) / float64(ma))
		}
		return r
	}
	rows := []row{
		pair("validation, full Check(deploy) of a lineage on disk: RSA-2048 (baseline) vs ECDSA-P256", "BenchmarkCheck/key=rsa2048", "BenchmarkCheck/key=ecdsap256"),
		pair("  PEM parse, fullchain + key: RSA-2048 vs ECDSA-P256", "BenchmarkParsePEM/key=rsa2048", "BenchmarkParsePEM/key=ecdsap256"),
		pair("  key match: RSA-2048 vs ECDSA-P256", "BenchmarkKeyMatch/key=rsa2048", "BenchmarkKeyMatch/key=ecdsap256"),
		pair("  domain coverage, 2 names: RSA-2048 vs ECDSA-P256", "BenchmarkCovers/key=rsa2048", "BenchmarkCovers/key=ecdsap256"),
		pair("signal Emit+Wait, every subscriber declines: 1 subscriber (baseline) vs 1,000", "BenchmarkFanout/subs=1", "BenchmarkFanout/subs=1000"),
		pair("  10 vs 100 subscribers", "BenchmarkFanout/subs=10", "BenchmarkFanout/subs=100"),
	}
	var names []string
	for k := range medians {
		names = append(names, k)
	}
	sort.Strings(names)
	logf("gobench medians (ns/op): %s", func() string {
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "%s=%d ", n, medians[n].Nanoseconds())
		}
		return b.String()
	}())
	return rows, stat.String(), nil
}

// benchstat runs an installed benchstat, or the pinned one through the Go
// module proxy.
func benchstat(repo, file string, args ...string) (string, error) {
	args = append(args, file)
	var cmd *exec.Cmd
	if p, err := exec.LookPath("benchstat"); err == nil {
		cmd = exec.Command(p, args...)
	} else if p := filepath.Join(goEnv("GOPATH"), "bin", "benchstat"); fileExists(p) {
		cmd = exec.Command(p, args...)
	} else {
		cmd = exec.Command("go", append([]string{"run", benchstatModule}, args...)...)
	}
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", cmd.String(), err, out)
	}
	return string(out), nil
}

func goEnv(key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
