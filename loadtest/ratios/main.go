// Command ratios reads `go test -bench` output on standard input and prints,
// for every benchmark and metric, the median, minimum and maximum over the
// runs (-count N). Benchmarks here report rates and ratios to references
// measured in the same run; medians over several runs are the figures to
// quote on a shared, noisy machine.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	values := map[string]map[string][]float64{}
	var order []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := fields[0]
		if values[name] == nil {
			values[name] = map[string][]float64{}
			order = append(order, name)
		}
		// fields[1] is the iteration count; then value/unit pairs.
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil || fields[i+1] == "ns/op" {
				continue
			}
			values[name][fields[i+1]] = append(values[name][fields[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "ratios: reading input:", err)
		os.Exit(1)
	}
	if len(order) == 0 {
		fmt.Fprintln(os.Stderr, "ratios: no benchmark results on standard input")
		os.Exit(1)
	}
	for _, name := range order {
		fmt.Printf("\n%s\n", name)
		units := make([]string, 0, len(values[name]))
		for u := range values[name] {
			units = append(units, u)
		}
		sort.Strings(units)
		for _, u := range units {
			vs := values[name][u]
			sort.Float64s(vs)
			fmt.Printf("  %-20s median %10.3f   min %10.3f   max %10.3f   (n=%d)\n", u, median(vs), vs[0], vs[len(vs)-1], len(vs))
		}
	}
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
