package syncroute

import (
	"math"
	"sync"
)

// retryBudget keeps retries a bounded share of a route's traffic (the
// retry budget of Finagle and Envoy): every request deposits ratio of a
// token, every retry withdraws a whole one, and a small reserve lets a
// quiet route retry at all. When an upstream fails hard, retries stop at
// about ratio of the requests instead of multiplying them. Tokens are
// counted in thousandths, so that 5 deposits of 0.2 make exactly one.
type retryBudget struct {
	mu      sync.Mutex
	deposit int64 // thousandths of a token per request
	limit   int64 // most thousandths saved
	tokens  int64
}

// retryReserve is the number of retries a route may make before its
// requests have earned any.
const retryReserve = 10

const milli = 1000

func newRetryBudget(ratio float64) *retryBudget {
	d := int64(math.Round(ratio * milli))
	return &retryBudget{deposit: d, limit: retryReserve*milli + 100*d, tokens: retryReserve * milli}
}

// record records one request.
func (b *retryBudget) record() {
	b.mu.Lock()
	b.tokens = min(b.tokens+b.deposit, b.limit)
	b.mu.Unlock()
}

// withdraw takes the token for one retry, reporting whether there was one.
func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < milli {
		return false
	}
	b.tokens -= milli
	return true
}
