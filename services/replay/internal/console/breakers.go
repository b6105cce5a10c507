package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// breakerMetric is the gateway's gauge of each sync route's breaker.
const breakerMetric = "switchyard_breaker_state"

// gatewayBreakers is what one gateway's /metrics says of its breakers.
type gatewayBreakers struct {
	URL      string
	Breakers []breakerState
	// Err says why the gateway's metrics could not be read.
	Err string
}

type breakerState struct {
	Route string
	State string
}

// breakerStates reads the breakers of every configured gateway at once,
// each within a second: a slow or unreachable gateway shows as such, it
// does not hold the page.
func (c *Console) breakerStates(ctx context.Context) []gatewayBreakers {
	out := make([]gatewayBreakers, len(c.settings.GatewayMetrics))
	var wg sync.WaitGroup
	for i, u := range c.settings.GatewayMetrics {
		wg.Go(func() {
			out[i] = gatewayBreakers{URL: u}
			states, err := readBreakers(ctx, c.metricsClient, u)
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			out[i].Breakers = states
		})
	}
	wg.Wait()
	return out
}

// readBreakers fetches a Prometheus text exposition (at most 8 MiB) and
// returns the breaker states in it, by route.
func readBreakers(ctx context.Context, client *http.Client, url string) ([]breakerState, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("gateway metrics URL: %w", err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the gateway's metrics answered %s", resp.Status)
	}
	return parseBreakers(io.LimitReader(resp.Body, 8<<20))
}

// parseBreakers reads the breaker gauge from a text exposition.
func parseBreakers(r io.Reader) ([]breakerState, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's metrics: %w", err)
	}
	var out []breakerState
	if fam, ok := families[breakerMetric]; ok {
		for _, m := range fam.GetMetric() {
			route := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					route = l.GetValue()
				}
			}
			state := "closed"
			switch m.GetGauge().GetValue() {
			case 1:
				state = "half-open"
			case 2:
				state = "open"
			}
			out = append(out, breakerState{Route: route, State: state})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Route < out[j].Route })
	return out, nil
}
