package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the medians of the rounds, as ratios to their references.
type report struct {
	Date    time.Time `json:"date"`
	Machine machine   `json:"machine"`
	Config  struct {
		Rounds            int    `json:"rounds"`
		Concurrency       int    `json:"concurrency"`
		AcceptConcurrency int    `json:"accept_concurrency"`
		ScaleRows         int    `json:"scale_rows"`
		Backlog           int    `json:"backlog"`
		BacklogReference  int    `json:"backlog_reference"`
		Duration          string `json:"duration"`
		Messages          int    `json:"messages_per_sqs_measurement"`
	} `json:"config"`
	Rows   []row   `json:"rows"`
	Rounds []round `json:"rounds"`
}

type row struct {
	Reference      string  `json:"reference"`
	ReferenceValue float64 `json:"reference_value"`
	Platform       string  `json:"platform"`
	PlatformValue  float64 `json:"platform_value"`
	// Ratio is the median of the rounds' platform / reference (rates: the
	// share of the reference's speed kept; latencies: how many times the
	// reference's it takes).
	Ratio float64 `json:"ratio"`
	Unit  string  `json:"unit"`
}

type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemoryGB string `json:"memory"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
}

func median(rounds []round, f func(round) float64) float64 {
	vs := make([]float64, len(rounds))
	for i, r := range rounds {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

func newReport(cfg config, rounds []round) report {
	rep := report{Date: time.Now().UTC(), Machine: machineInfo(), Rounds: rounds}
	rep.Config.Rounds, rep.Config.Concurrency, rep.Config.Duration, rep.Config.Messages = cfg.rounds, cfg.concurrency, cfg.duration.String(), cfg.messages
	rep.Config.AcceptConcurrency, rep.Config.ScaleRows, rep.Config.Backlog = cfg.acceptConcurrency, cfg.scaleRows, cfg.backlog
	rep.Config.BacklogReference = cfg.backlogReference
	add := func(ref string, refF func(round) float64, plat string, platF func(round) float64, unit string) {
		rv, pv := median(rounds, refF), median(rounds, platF)
		// Each round's ratio pairs two figures measured minutes apart;
		// the median of those ratios is steadier than a ratio of medians
		// on a machine whose speed drifts.
		ratio := median(rounds, func(r round) float64 {
			if refF(r) <= 0 {
				return 0
			}
			return platF(r) / refF(r)
		})
		rep.Rows = append(rep.Rows, row{Reference: ref, ReferenceValue: rv, Platform: plat, PlatformValue: pv, Ratio: ratio, Unit: unit})
	}
	has := func(f func(round) float64) bool { return median(rounds, f) > 0 }
	if has(func(r round) float64 { return r.HelloRPS }) {
		add("bare Echo, hello handler", func(r round) float64 { return r.HelloRPS },
			"gateway: authenticated sync route, same handler", func(r round) float64 { return r.GatewayHelloRPS }, "req/s")
		add("bare Echo, text-stats handler", func(r round) float64 { return r.BareTextStatsRPS },
			"gateway: authenticated text-stats route", func(r round) float64 { return r.SyncRPS }, "req/s")
	}
	if has(func(r round) float64 { return r.InsertRPS }) {
		add("pgx single-row insert", func(r round) float64 { return r.InsertRPS },
			"gateway: async accept (job + outbox, committed)", func(r round) float64 { return r.AcceptRPS }, "req/s")
		if has(func(r round) float64 { return r.PgbenchTPS }) {
			add("pgbench single-row insert", func(r round) float64 { return r.PgbenchTPS },
				"gateway: async accept", func(r round) float64 { return r.AcceptRPS }, "req/s")
		}
		// The accept at low load and its rise over a single-row insert;
		// where the rise goes (the statement, the gateway's layers around
		// a handler that does nothing); and what group commit adds to
		// the statement (the target: the window's cost).
		for _, q := range []struct {
			name string
			f    func(lowLoad) float64
		}{{"p50", func(l lowLoad) float64 { return l.P50Ms }}, {"p99", func(l lowLoad) float64 { return l.P99Ms }}} {
			// pair adds the row of plat against ref; with rise set, also
			// the row of plat's median difference over ref.
			pair := func(ref string, refF func(round) lowLoad, plat string, platF func(round) lowLoad, rise string) {
				add(ref+" "+q.name+" at 10/s", func(r round) float64 { return q.f(refF(r)) },
					plat+" "+q.name+" at 10/s", func(r round) float64 { return q.f(platF(r)) }, "ms")
				if rise != "" {
					rep.Rows = append(rep.Rows, row{Reference: "-", Platform: rise + ", " + q.name + " at 10/s (target <= 2)",
						PlatformValue: median(rounds, func(r round) float64 { return q.f(platF(r)) - q.f(refF(r)) }), Unit: "ms"})
				}
			}
			insert := func(r round) lowLoad { return r.InsertAt10 }
			statement := func(r round) lowLoad { return r.StatementAt10 }
			pair("pgx single-row insert", insert, "gateway: accept", func(r round) lowLoad { return r.AcceptAt10 }, "the accept over the insert")
			pair("pgx single-row insert", insert, "the accept's statement alone (job + outbox)", statement, "")
			pair("the accept's statement alone", statement, "the same through group commit", func(r round) lowLoad { return r.BatchedAt10 }, "group commit's cost")
			pair("bare Echo hello", func(r round) lowLoad { return r.BareHelloAt10 }, "gateway: authenticated hello", func(r round) lowLoad { return r.GatewayHelloAt10 }, "")
		}
		rep.Rows = append(rep.Rows, row{Reference: "-", Platform: "accepts shed (503 + Retry-After) at saturation",
			PlatformValue: median(rounds, func(r round) float64 { return float64(r.AcceptShed) }), Unit: "requests"})
		rep.Rows = append(rep.Rows, row{Reference: "-", Platform: "gateway resident memory at accept saturation",
			PlatformValue: median(rounds, func(r round) float64 { return r.GatewayRSSBytes }) / (1 << 20), Unit: "MiB"})
	}
	for _, o := range []struct {
		name, excess string
		f            func(round) overload
		beside       func(round) besideExcess
	}{
		{"2x", "1x", func(r round) overload { return r.Overload2x }, func(r round) besideExcess { return r.Beside2x }},
		{"5x", "4x", func(r round) overload { return r.Overload5x }, func(r round) besideExcess { return r.Beside5x }},
	} {
		if !has(func(r round) float64 { return o.f(r).OfferedRPS }) {
			continue
		}
		if has(func(r round) float64 { return o.beside(r).ExcessRPS }) {
			// The control: what the excess costs this machine however
			// cheaply it is answered (see serveShedSink).
			add("accept p99 at saturation beside "+o.excess+" of it shed by a bare server", func(r round) float64 { return o.beside(r).P99Ms },
				"accept p99 of admitted at "+o.name+" saturation", func(r round) float64 { return o.f(r).AdmittedP99Ms }, "ms")
			add("the same, as the gateway timed them", func(r round) float64 { return o.beside(r).ServerP99Ms },
				"the same, as the gateway timed them, at "+o.name, func(r round) float64 { return o.f(r).ServerP99Ms }, "ms")
		}
		// What the generator could send of its schedule: a connection
		// whose request was shed is busy until the answer comes, held
		// back by the gateway's shed delay.
		add("accept at saturation", func(r round) float64 { return r.AcceptRPS },
			"accept sent at "+o.name+" saturation (the rest: all connections busy)", func(r round) float64 { return o.f(r).OfferedRPS }, "req/s")
		add("accept at saturation", func(r round) float64 { return r.AcceptRPS },
			"accept admitted at "+o.name+" saturation", func(r round) float64 { return o.f(r).AdmittedRPS }, "req/s")
		add("accept p99 at saturation", func(r round) float64 { return r.SaturatedP99Ms },
			"accept p99 of admitted at "+o.name+" saturation", func(r round) float64 { return o.f(r).AdmittedP99Ms }, "ms")
		add("the same, as the gateway timed them", func(r round) float64 { return r.SaturatedServerP99Ms },
			"the same, as the gateway timed them, at "+o.name, func(r round) float64 { return o.f(r).ServerP99Ms }, "ms")
		rep.Rows = append(rep.Rows, row{Reference: "-", Platform: "accept shed (503 + Retry-After) at " + o.name + " saturation",
			PlatformValue: 100 * median(rounds, func(r round) float64 { return o.f(r).ShedShare }), Unit: "%"},
			row{Reference: "-", Platform: "accept answers neither 202 nor 503 + Retry-After at " + o.name,
				PlatformValue: median(rounds, func(r round) float64 { return float64(o.f(r).Other) }), Unit: "requests"})
	}
	if has(func(r round) float64 { return r.EmptyAcceptRPS }) {
		add("accept on an empty database", func(r round) float64 { return r.EmptyAcceptRPS },
			fmt.Sprintf("accept with %d rows in jobs and job_events", rep.Config.ScaleRows), func(r round) float64 { return r.FullAcceptRPS }, "req/s")
		add("status on an empty database", func(r round) float64 { return r.EmptyStatusRPS },
			fmt.Sprintf("status with %d rows in jobs and job_events", rep.Config.ScaleRows), func(r round) float64 { return r.FullStatusRPS }, "req/s")
	}
	if has(func(r round) float64 { return r.BareSendMPS }) {
		if has(func(r round) float64 { return r.BareSend40MPS }) {
			add("SendMessageBatch(10) loop, 20 in parallel", func(r round) float64 { return r.BareSend20MPS },
				"the same loop, 40 in parallel", func(r round) float64 { return r.BareSend40MPS }, "msg/s")
		}
		add("SendMessageBatch(10) loop, best of 20 and 40 in parallel", func(r round) float64 { return r.BareSendMPS },
			"relay (8 loops x 50-row claims), rows waiting", func(r round) float64 { return r.RelayMPS }, "msg/s")
		add("SendMessageBatch(10) loop, best of 20 and 40 in parallel", func(r round) float64 { return r.BareSendMPS },
			"relay, timed from the jobs' first submission", func(r round) float64 { return r.ArrivingRelayMPS }, "msg/s")
		add("ReceiveMessage(10) + DeleteMessageBatch loop, 8 in parallel", func(r round) float64 { return r.BareReceiveMPS },
			"worker (8 consumers)", func(r round) float64 { return r.WorkerMPS }, "msg/s")
		add("SQS send -> receive -> delete p99", func(r round) float64 { return r.SQSRoundTripP99Ms },
			"accepted -> succeeded p99 at half saturation", func(r round) float64 { return r.EndToEndP99Ms }, "ms")
	}
	if has(func(r round) float64 { return r.BacklogRelayMPS }) {
		add(fmt.Sprintf("relay with %d rows waiting, same window", rep.Config.BacklogReference), func(r round) float64 { return r.BacklogReferenceMPS },
			fmt.Sprintf("relay with %d rows waiting in the outbox", rep.Config.Backlog), func(r round) float64 { return r.BacklogRelayMPS }, "msg/s")
	}
	return rep
}

func (rep report) print(w io.Writer) {
	m := rep.Machine
	fmt.Fprintf(w, "\nSwitchyard benchmark, %s\n", rep.Date.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s memory, %s, %s\n", m.CPUs, m.CPUModel, m.MemoryGB, m.Kernel, m.Go)
	fmt.Fprintf(w, "%d rounds: values are medians, ratios the medians of each round's ratio; %d concurrent clients (accept and inserts: %d) for %s per HTTP/insert measurement, %d messages per SQS measurement\n\n",
		rep.Config.Rounds, rep.Config.Concurrency, rep.Config.AcceptConcurrency, rep.Config.Duration, rep.Config.Messages)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "reference\tvalue\tplatform\tvalue\tratio")
	for _, r := range rep.Rows {
		ref := "-"
		if r.Reference != "-" {
			ref = fmt.Sprintf("%.1f %s", r.ReferenceValue, r.Unit)
		}
		ratio := "-"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.3f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f %s\t%s\n", r.Reference, ref, r.Platform, r.PlatformValue, r.Unit, ratio)
	}
	_ = tw.Flush()
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), CPUModel: "unknown", MemoryGB: "unknown", Kernel: "unknown"}
	if v := firstField("/proc/cpuinfo", "model name"); v != "" {
		m.CPUModel = v
	}
	if v := firstField("/proc/meminfo", "MemTotal"); v != "" {
		var kb int64
		if _, err := fmt.Sscanf(v, "%d kB", &kb); err == nil {
			m.MemoryGB = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

func firstField(path, key string) string {
	f, err := os.Open(path) //nolint:gosec // /proc files
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
