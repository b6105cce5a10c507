package syncroute

import "sync"

// retryBudget keeps retries a bounded share of a route's traffic (the
// retry budget of Finagle and Envoy): every request deposits ratio of a
// token, every retry withdraws a whole one, and a small reserve lets a
// quiet route retry at all. When an upstream fails hard, retries stop at
// about ratio of the requests instead of multiplying them.
type retryBudget struct {
	mu      sync.Mutex
	ratio   float64
	reserve float64
	tokens  float64
}

// retryReserve is the number of retries a route may make before its
// requests have earned any.
const retryReserve = 10

func newRetryBudget(ratio float64) *retryBudget {
	return &retryBudget{ratio: ratio, reserve: retryReserve, tokens: retryReserve}
}

// deposit records one request.
func (b *retryBudget) deposit() {
	b.mu.Lock()
	b.tokens = min(b.tokens+b.ratio, b.reserve+b.ratio*100)
	b.mu.Unlock()
}

// withdraw takes the token for one retry, reporting whether there was one.
func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
