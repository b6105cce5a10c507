package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcraScript is gcra and decide for every key at once, atomically, on the
// Redis server's clock. KEYS are the buckets; ARGV holds, per key, the
// interval and the tolerance in µs. Buckets are written only when every
// one allows, each expiring when it is full again. It returns
// {allowed, limiting index (0-based), remaining, retry µs, reset µs}.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
local allowed = 1
local limiting, remaining, retry, reset = 0, -1, -1, 0
for i = 1, n do
  local interval = tonumber(ARGV[2*i-1])
  local tolerance = tonumber(ARGV[2*i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if now < allow_at then
    if allowed == 1 or allow_at - now > retry then
      limiting, retry, reset, remaining = i - 1, allow_at - now, tat - now, 0
    end
    allowed = 0
  else
    tats[i] = new_tat
    local left = math.floor((now - allow_at) / interval)
    if allowed == 1 and (remaining < 0 or left < remaining) then
      limiting, remaining, reset = i - 1, left, new_tat - now
    end
  end
end
if allowed == 1 then
  for i = 1, n do
    redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1)
  end
  retry = 0
end
return {allowed, limiting, remaining, retry, reset}
`)

// Redis keeps buckets in Redis, shared by every process that uses the
// same server and key prefix. Multi-key checks run in one script, so with
// Redis Cluster every key of a request must hash to one slot (give keys a
// {hash tag}); a single server or a primary with replicas needs nothing.
type Redis struct {
	client redis.Scripter
	prefix string
}

// NewRedis returns a limiter storing buckets under prefix.
func NewRedis(client redis.Scripter, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, checks []Check) (Decision, error) {
	if len(checks) == 0 {
		return Decision{}, ErrNoChecks
	}
	keys := make([]string, len(checks))
	args := make([]any, 0, 2*len(checks))
	for i, c := range checks {
		keys[i] = r.prefix + c.Key
		args = append(args, c.Limit.interval(), c.Limit.tolerance())
	}
	res, err := gcraScript.Run(ctx, r.client, keys, args...).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit script: %w", err)
	}
	if len(res) != 5 {
		return Decision{}, errors.New("rate limit script: unexpected reply " + strconv.Itoa(len(res)))
	}
	d := Decision{
		Allowed: res[0] == 1, Limiting: int(res[1]), Remaining: int(res[2]),
		RetryAfter: time.Duration(res[3]) * time.Microsecond, Reset: time.Duration(res[4]) * time.Microsecond,
	}
	return d, nil
}
