// Package lock implements reservation.Locker: Redis queues the writers of a resource across
// replicas, Local does it within one process.
//
// A lock is an optimisation, not the guard: the database transaction is. So when Redis cannot
// be reached, Lock fails fast with EUNAVAILABLE and the caller goes on without the lock; and a
// lock that expired before its release is logged and counted, not reported as an error.
//
// Create the Redis client with small timeouts and few retries, as ClientOptions and NewClient
// do: a slow or dead Redis must cost a request a few hundred milliseconds at most. (A retried
// take is harmless: a key already set to the call's own token counts as taken by it.)
package lock

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"reservation"
)

// RedisOptions configures a Redis locker; a zero field takes its default.
type RedisOptions struct {
	Prefix string // prepended to every key, e.g. "rsv:"
	// TTL is the lease of a lock: a held lock is renewed every third of it while its holder
	// runs, so a holder that dies (or loses Redis) frees its locks at most TTL later. Default 2s.
	TTL      time.Duration
	Wait     time.Duration // the longest one Lock call waits for taken locks; default 5s
	Cooldown time.Duration // how long Lock fails fast after a Redis error; default 1s
	Logger   *slog.Logger  // default slog.Default()
	// Now is the clock of the cooldown; nil means time.Now. (Waits and leases run on real time.)
	Now func() time.Time
}

// DefaultTTL is the lease of a lock when RedisOptions.TTL is zero: a crashed holder's locks are
// free again at most this long after the crash.
const DefaultTTL = 2 * time.Second

// DefaultWait is the longest a Lock call waits for taken locks when no wait is given.
const DefaultWait = 5 * time.Second

// Stats counts what a Redis locker did since it was created.
type Stats struct {
	Acquired    int64 // Lock calls that took all their keys
	Busy        int64 // Lock calls that gave up at the wait bound
	Lost        int64 // keys whose release found the lock expired or taken by another holder
	Unavailable int64 // Lock calls and releases that failed on Redis, fast failures included
	Renewed     int64 // lease renewals of held locks that Redis accepted
}

// ErrBreakerOpen is the cause of the EUNAVAILABLE errors Lock returns without asking Redis,
// during the cooldown that follows a Redis error.
var ErrBreakerOpen = errors.New("redis not tried during the cooldown after an error")

// Redis is a Locker shared by every replica that uses the same Redis and prefix. Each key is a
// Redis key set to a token of the Lock call with a short lease (the TTL), renewed while the
// lock is held and deleted only while it still holds that token.
//
// Each resource's key carries its own hash tag, so that on a Redis Cluster the locks spread
// over the masters. A Lock call on several resources takes all of them or none: when one is
// taken by another holder it releases what it took and tries again after a pause, so it never
// sits on some keys while it waits for another.
type Redis struct {
	client   redis.UniversalClient
	cluster  *redis.ClusterClient // client, when it is a cluster client: keys are grouped by slot
	prefix   string
	ttl      time.Duration
	wait     time.Duration
	cooldown time.Duration
	log      *slog.Logger
	now      func() time.Time // the breaker's clock
	// queue lines up this process's writers of a key before Redis, so that they take turns
	// at once instead of polling Redis for the same key.
	queue *Local

	openUntil atomic.Int64 // the breaker: Unix nanoseconds until which Lock fails fast; 0 when closed

	acquired, busy, lost, unavailable, renewed atomic.Int64
}

var _ reservation.Locker = (*Redis)(nil)

// releaseTimeout bounds a release, which runs even when the caller's context has ended.
const releaseTimeout = time.Second

// takeAll sets every one of KEYS to the token ARGV[1] with a lease of ARGV[2] milliseconds,
// unless one of them holds another token: then it sets none and returns the (1-based) index
// of the first such key. It returns 0 when the token holds them all. All the keys must be in
// one slot on a Redis Cluster.
var takeAll = redis.NewScript(`
for i, key in ipairs(KEYS) do
	local v = redis.call("GET", key)
	if v and v ~= ARGV[1] then
		return i
	end
end
for _, key in ipairs(KEYS) do
	redis.call("SET", key, ARGV[1], "PX", ARGV[2])
end
return 0
`)

// renew extends to ARGV[2] milliseconds the lease of those of KEYS that still hold the token
// ARGV[1], and returns how many it extended.
var renew = redis.NewScript(`
local n = 0
for _, key in ipairs(KEYS) do
	if redis.call("GET", key) == ARGV[1] then
		n = n + redis.call("PEXPIRE", key, ARGV[2])
	end
end
return n
`)

// compareAndDelete deletes those of KEYS that still hold the token ARGV[1], and returns how
// many it deleted.
var compareAndDelete = redis.NewScript(`
local n = 0
for _, key in ipairs(KEYS) do
	if redis.call("GET", key) == ARGV[1] then
		n = n + redis.call("DEL", key)
	end
end
return n
`)

// NewRedis returns a locker on client, which should be configured as ClientOptions (or
// NewClient) does. client may be a *redis.Client, a Sentinel failover client or a
// *redis.ClusterClient.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	r := &Redis{
		client:   client,
		prefix:   opts.Prefix,
		ttl:      reservation.OrDefault(opts.TTL, DefaultTTL),
		wait:     reservation.OrDefault(opts.Wait, DefaultWait),
		cooldown: reservation.OrDefault(opts.Cooldown, time.Second),
		log:      opts.Logger,
		now:      opts.Now,
	}
	r.cluster, _ = client.(*redis.ClusterClient)
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.queue = NewLocal(r.wait)
	return r
}

// Stats returns the counters of the locker.
func (r *Redis) Stats() Stats {
	return Stats{
		Acquired:    r.acquired.Load(),
		Busy:        r.busy.Load(),
		Lost:        r.lost.Load(),
		Unavailable: r.unavailable.Load(),
		Renewed:     r.renewed.Load(),
	}
}

// Key returns the Redis key of the lock on key: the prefix, "lock:", and key as its hash tag.
func (r *Redis) Key(key string) string { return r.prefix + "lock:{" + key + "}" }

// Lock takes the locks on keys: first in this process's queue, in the order given, then in
// Redis, all of them or none, retrying with a jittered backoff while one is taken, until the
// wait bound or the end of ctx. It fails with EABORTED at the wait bound, with EUNAVAILABLE
// when Redis cannot be reached, and with ctx's error when ctx ends; whatever it took is
// released before it fails. While the locks are held, a goroutine of the call renews their
// lease; the returned Unlock stops it, waits for it, and releases the locks.
func (r *Redis) Lock(ctx context.Context, keys ...string) (reservation.Unlock, error) {
	keys = distinct(keys)
	if len(keys) == 0 {
		return func(context.Context) {}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lock %q: %w", keys[0], err)
	}
	deadline := time.Now().Add(r.wait)
	unqueue, err := r.queue.Lock(ctx, keys...)
	if err != nil {
		if reservation.ErrorCode(err) == reservation.EABORTED {
			r.busy.Add(1)
		}
		return nil, err
	}
	if !r.allow() {
		unqueue(ctx)
		r.unavailable.Add(1)
		return nil, unavailable(keys[0], ErrBreakerOpen)
	}

	token := newToken()
	groups := r.groups(keys)
	if err := r.take(ctx, keys, groups, token, deadline); err != nil {
		// A SET that failed in flight may have taken its key all the same: release every
		// key this token may hold, quietly, as Redis is likely unreachable.
		r.releaseQuietly(ctx, groups, token)
		unqueue(ctx)
		return nil, err
	}
	r.acquired.Add(1)
	stopRenewing := r.keepAlive(groups, token)

	var released atomic.Bool
	return func(ctx context.Context) {
		if released.CompareAndSwap(false, true) {
			stopRenewing()
			r.releaseAll(ctx, groups, token)
			unqueue(ctx)
		}
	}, nil
}

// take takes the locks on keys, all or none, waiting for taken ones until deadline. Each
// attempt is one round trip (on a cluster, one per node, in parallel).
func (r *Redis) take(ctx context.Context, keys []string, groups [][]string, token string, deadline time.Time) error {
	for attempt := 0; ; attempt++ {
		results, err := r.eval(ctx, takeAll, groups, token, r.ttl.Milliseconds())
		switch {
		case err != nil && ended(ctx) != nil:
			return fmt.Errorf("lock %q: %w", keys[0], ended(ctx))
		case err != nil:
			r.trip(ctx, err)
			return unavailable(keys[0], err)
		}
		r.reset()
		busyKey := ""
		var took [][]string
		for i, n := range results {
			if n == 0 {
				took = append(took, groups[i])
			} else if busyKey == "" {
				busyKey = r.resource(groups[i][n-1])
			}
		}
		if busyKey == "" {
			return nil
		}
		if len(took) > 0 {
			// Some slots were free and others not: give the free ones back rather than sit
			// on them while waiting.
			if _, err := r.eval(ctx, compareAndDelete, took, token); err != nil {
				r.trip(ctx, err)
				return unavailable(keys[0], err)
			}
		}

		left := time.Until(deadline)
		if left <= 0 {
			r.busy.Add(1)
			return busy(busyKey, r.wait)
		}
		if err := reservation.Sleep(ctx, min(backoff(attempt), left)); err != nil {
			return fmt.Errorf("lock %q: %w", busyKey, err)
		}
	}
}

// keepAlive renews the lease of the locks in groups every third of the TTL until the returned
// function is called; that function stops the renewing goroutine and waits for it. It gives up
// (and the locks lapse at their TTL) once a renewal finds a lock no longer held by token.
func (r *Redis) keepAlive(groups [][]string, token string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		every := max(r.ttl/3, time.Millisecond)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, cancelRenew := context.WithTimeout(ctx, every)
			results, err := r.eval(rctx, renew, groups, token, r.ttl.Milliseconds())
			cancelRenew()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				// Try again at the next tick: the lease lapses by itself if Redis stays away.
				// Debug only: while Redis is down every held lock fails here, and the breaker
				// already reports it.
				r.log.Debug("lock lease renewal failed", "keys", groups, "ttl", r.ttl, "err", err)
				continue
			}
			var n, want int64
			for i, k := range results {
				n, want = n+k, want+int64(len(groups[i]))
			}
			if n < want {
				r.log.Warn("lock lease lapsed while held: renewal stopped; the database guards the write", "keys", groups, "ttl", r.ttl)
				return
			}
			r.renewed.Add(1)
		}
	}()
	return func() { cancel(); <-done }
}

// groups returns the Redis keys of keys, in order, in groups that one script may take: one
// group on a single Redis, one per hash slot on a cluster.
func (r *Redis) groups(keys []string) [][]string {
	rkeys := make([]string, len(keys))
	for i, key := range keys {
		rkeys[i] = r.Key(key)
	}
	if r.cluster == nil {
		return [][]string{rkeys}
	}
	var groups [][]string
	slots := map[uint16]int{}
	for _, k := range rkeys {
		s := slot(k)
		if i, ok := slots[s]; ok {
			groups[i] = append(groups[i], k)
			continue
		}
		slots[s] = len(groups)
		groups = append(groups, []string{k})
	}
	return groups
}

// resource returns the key of a lock from its Redis key.
func (r *Redis) resource(rkey string) string {
	return strings.TrimSuffix(strings.TrimPrefix(rkey, r.prefix+"lock:{"), "}")
}

// eval runs s on each group with args and returns each group's integer answer: one call for one
// group, one pipeline (one round trip per node) for several.
func (r *Redis) eval(ctx context.Context, s *redis.Script, groups [][]string, args ...any) ([]int64, error) {
	if len(groups) == 1 {
		n, err := s.Run(ctx, r.client, groups[0], args...).Int64()
		return []int64{n}, err
	}
	pipe := r.client.Pipeline()
	cmds := make([]*redis.Cmd, len(groups))
	for i, g := range groups {
		// EVAL rather than EVALSHA: a pipeline cannot fall back on NOSCRIPT, and a replica
		// promoted after a failover may not have the script cached.
		cmds[i] = s.Eval(ctx, pipe, g, args...)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]int64, len(groups))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// releaseAll releases the locks in groups, logging and counting the locks it finds lost.
func (r *Redis) releaseAll(ctx context.Context, groups [][]string, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	results, err := r.eval(ctx, compareAndDelete, groups, token)
	var n, want int64
	for i, g := range groups {
		want += int64(len(g))
		if err == nil {
			n += results[i]
		}
	}
	switch {
	case err != nil:
		r.trip(ctx, err)
		r.log.WarnContext(ctx, "lock release failed; the locks expire at their TTL", "keys", groups, "ttl", r.ttl, "err", err)
	case n < want:
		r.lost.Add(want - n)
		r.log.WarnContext(ctx, "lock lost before its release: expired or taken by another holder", "keys", groups, "lost", want-n, "ttl", r.ttl)
	}
}

// releaseQuietly releases the locks in groups, ignoring errors: it cleans up after a failure,
// when some of the keys were probably never set.
func (r *Redis) releaseQuietly(ctx context.Context, groups [][]string, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_, _ = r.eval(ctx, compareAndDelete, groups, token)
}

// allow reports whether Lock may use Redis: the breaker is closed, or its cooldown is over and
// this call is the one that tries Redis again while the others keep failing fast.
func (r *Redis) allow() bool {
	until := r.openUntil.Load()
	if until == 0 {
		return true
	}
	now := r.now().UnixNano()
	if now < until {
		return false
	}
	return r.openUntil.CompareAndSwap(until, now+int64(r.cooldown))
}

// trip counts a Redis error and opens the breaker for a cooldown. On a cluster it also asks
// the client to reload the slot map: after a failover the client would otherwise keep sending
// a slot's commands to its dead master until the next periodic reload.
func (r *Redis) trip(ctx context.Context, err error) {
	r.unavailable.Add(1)
	if r.cluster != nil {
		r.cluster.ReloadState(ctx)
	}
	if r.openUntil.Swap(r.now().Add(r.cooldown).UnixNano()) == 0 {
		r.log.Warn("redis unavailable; locks fail fast", "cooldown", r.cooldown, "err", err)
	}
}

// reset closes the breaker after Redis answered.
func (r *Redis) reset() {
	if r.openUntil.Load() != 0 && r.openUntil.Swap(0) != 0 {
		r.log.Info("redis available again; locks resume")
	}
}

func unavailable(key string, err error) *reservation.Error {
	return &reservation.Error{
		Code:    reservation.EUNAVAILABLE,
		Message: fmt.Sprintf("lock %q: redis unavailable", key),
		Err:     err,
	}
}

// backoff returns a random pause in [200µs, min(200µs·2^attempt, 4ms)], so that waiters spread
// out without leaving a freed lock idle for long: on one hot resource, pauses of up to 20ms
// left rsvbench's hot workload at 200 ok/s with a p99 of 323ms.
func backoff(attempt int) time.Duration {
	const floor = 200 * time.Microsecond
	ceil := 4 * time.Millisecond
	if attempt < 5 {
		ceil = min(ceil, floor<<attempt)
	}
	return floor + rand.N(ceil-floor+1)
}

// ended returns ctx's error, or DeadlineExceeded once ctx's deadline has passed: a command
// whose socket deadline is ctx's can fail before ctx's own timer fires.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = cryptorand.Read(b) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b)
}
