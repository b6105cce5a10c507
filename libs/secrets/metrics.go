package secrets

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/breakergauge"
)

var (
	descLogins = prometheus.NewDesc("switchyard_vault_logins_total",
		"Logins to Vault (the first, and each one after a renewal failed or a token was refused).", nil, nil)
	descLoginErrors = prometheus.NewDesc("switchyard_vault_login_errors_total", "Failed logins to Vault.", nil, nil)
	descRenewals    = prometheus.NewDesc("switchyard_vault_token_renewals_total", "Renewals of the Vault token.", nil, nil)
	descReadErrors  = prometheus.NewDesc("switchyard_vault_errors_total",
		"Failed Vault reads, watches, renewals and lease renewals.", nil, nil)
	descTokenExpiry = prometheus.NewDesc("switchyard_vault_token_expiry_timestamp_seconds",
		"When the Vault token ends unless renewed (Unix time; absent for a token without TTL).", nil, nil)
	descHealthy = prometheus.NewDesc("switchyard_vault_healthy",
		"1 while the last login, renewal and every watched read succeeded; 0 while something fails (the service runs on what it holds).", nil, nil)
	descLeaseExpiry = prometheus.NewDesc("switchyard_vault_lease_expiry_timestamp_seconds",
		"When the current dynamic database credentials' lease ends (Unix time).", []string{"role"}, nil)
	descRotations = prometheus.NewDesc("switchyard_vault_lease_rotations_total",
		"Times the dynamic database credentials were replaced by a new user.", []string{"role"}, nil)
	descRequestsFailed = prometheus.NewDesc("switchyard_vault_requests_failed_total",
		"Requests to Vault that got no answer or a 5xx answer (they count towards opening the breaker).", nil, nil)
	descShortCircuited = prometheus.NewDesc("switchyard_vault_requests_short_circuited_total",
		"Calls to Vault answered at once, unsent, because the process's Vault breaker was open.", nil, nil)
	descBreakerOpen = prometheus.NewDesc("switchyard_vault_breaker_open",
		"1 while the process's Vault circuit breaker is open (calls answered at once, unsent), 0.5 while it probes, 0 while closed.", nil, nil)
)

// Describe implements prometheus.Collector: the client's login, renewal
// and lease state, read when scraped.
func (c *Client) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLogins, descLoginErrors, descRenewals, descReadErrors, descTokenExpiry, descHealthy, descLeaseExpiry, descRotations, descRequestsFailed, descShortCircuited, descBreakerOpen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Client) Collect(ch chan<- prometheus.Metric) {
	st := c.Stats()
	ch <- prometheus.MustNewConstMetric(descLogins, prometheus.CounterValue, float64(st.Logins))
	ch <- prometheus.MustNewConstMetric(descLoginErrors, prometheus.CounterValue, float64(st.LoginErrors))
	ch <- prometheus.MustNewConstMetric(descRenewals, prometheus.CounterValue, float64(st.Renewals))
	ch <- prometheus.MustNewConstMetric(descReadErrors, prometheus.CounterValue, float64(st.ReadErrors))
	if !st.TokenExpires.IsZero() {
		ch <- prometheus.MustNewConstMetric(descTokenExpiry, prometheus.GaugeValue, float64(st.TokenExpires.Unix()))
	}
	healthy := 1.0
	if c.Ready(context.Background()) != nil {
		healthy = 0
	}
	ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy)
	ch <- prometheus.MustNewConstMetric(descRequestsFailed, prometheus.CounterValue, float64(c.guard.failed.Load()))
	ch <- prometheus.MustNewConstMetric(descShortCircuited, prometheus.CounterValue, float64(c.guard.shortCircuited.Load()))
	ch <- prometheus.MustNewConstMetric(descBreakerOpen, prometheus.GaugeValue, breakergauge.Open(c.guard.breaker.State()))
	c.mu.Lock()
	databases := append([]*DatabaseCredentials(nil), c.databases...)
	c.mu.Unlock()
	for _, d := range databases {
		ch <- prometheus.MustNewConstMetric(descLeaseExpiry, prometheus.GaugeValue, float64(d.Expires().Unix()), d.concern())
		ch <- prometheus.MustNewConstMetric(descRotations, prometheus.CounterValue, float64(d.Rotations()), d.concern())
	}
}
