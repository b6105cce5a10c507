package secrets

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
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
)

// Describe implements prometheus.Collector: the client's login, renewal
// and lease state, read when scraped.
func (c *Client) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLogins, descLoginErrors, descRenewals, descReadErrors, descTokenExpiry, descHealthy, descLeaseExpiry, descRotations} {
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
	c.mu.Lock()
	databases := append([]*DatabaseCredentials(nil), c.databases...)
	c.mu.Unlock()
	for _, d := range databases {
		ch <- prometheus.MustNewConstMetric(descLeaseExpiry, prometheus.GaugeValue, float64(d.Expires().Unix()), d.concern())
		ch <- prometheus.MustNewConstMetric(descRotations, prometheus.CounterValue, float64(d.Rotations()), d.concern())
	}
}
