package lock_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"reservation"
	"reservation/lock"
	"reservation/lock/locktest"
)

// newRedis returns a locker on client under prefix that logs to the test output.
func newRedis(t *testing.T, client redis.UniversalClient, prefix string, opts lock.RedisOptions) *lock.Redis {
	opts.Prefix = prefix
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	return lock.NewRedis(client, opts)
}

// held reports whether the Redis key of lock key exists.
func held(t *testing.T, client redis.UniversalClient, prefix, key string) bool {
	t.Helper()
	rkey := prefix + "lock:{" + key + "}"
	n, err := client.Exists(t.Context(), rkey).Result()
	if err != nil {
		t.Fatalf("exists %q: %v", rkey, err)
	}
	return n == 1
}

func mustLock(t *testing.T, l reservation.Locker, keys ...string) reservation.Unlock {
	t.Helper()
	unlock, err := l.Lock(t.Context(), keys...)
	if err != nil {
		t.Fatalf("Lock(%q): %v", keys, err)
	}
	return unlock
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := reservation.ErrorCode(err); got != code {
		t.Fatalf("error code = %q, want %q (error: %v)", got, code, err)
	}
}

// exclusion runs 32 goroutines that each increment a shared counter 20 times under the lock,
// with a pause between its read and its write, and checks that no increment was lost and that
// no two goroutines were ever inside together.
func exclusion(t *testing.T, lockers ...reservation.Locker) {
	const goroutines, iterations = 32, 20
	// The counter is read and written in two steps, so overlapping holders lose increments;
	// each step is atomic only so that the race detector, which cannot see the ordering Redis
	// provides, does not flag it.
	var counter, inside, maxInside atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		l := lockers[g%len(lockers)]
		wg.Go(func() {
			for range iterations {
				unlock, err := l.Lock(t.Context(), "resource")
				if err != nil {
					t.Errorf("Lock: %v", err)
					return
				}
				if n := inside.Add(1); n > maxInside.Load() {
					maxInside.Store(n)
				}
				v := counter.Load()
				time.Sleep(50 * time.Microsecond)
				counter.Store(v + 1)
				inside.Add(-1)
				unlock(t.Context())
			}
		})
	}
	wg.Wait()
	if got, want := counter.Load(), int64(goroutines*iterations); got != want {
		t.Errorf("counter = %d, want %d: holders overlapped", got, want)
	}
	if got := maxInside.Load(); got != 1 {
		t.Errorf("at most %d holders at once, want 1", got)
	}
}

func TestRedisExclusion(t *testing.T) {
	// Two lockers on two clients are two replicas.
	c1, c2 := locktest.Client(t), locktest.Client(t)
	prefix := locktest.Prefix(t, c1)
	opts := lock.RedisOptions{Wait: 30 * time.Second}
	r1, r2 := newRedis(t, c1, prefix, opts), newRedis(t, c2, prefix, opts)

	exclusion(t, r1, r2)

	s1, s2 := r1.Stats(), r2.Stats()
	if got := s1.Acquired + s2.Acquired; got != 32*20 {
		t.Errorf("acquired %d locks, want %d", got, 32*20)
	}
	if s1.Lost+s2.Lost+s1.Unavailable+s2.Unavailable+s1.Busy+s2.Busy != 0 {
		t.Errorf("stats %+v and %+v, want no lost, unavailable or busy", s1, s2)
	}
	if held(t, c1, prefix, "resource") {
		t.Error("lock still held after every unlock")
	}
}

func TestRedisBusy(t *testing.T) {
	client := locktest.Client(t)
	prefix := locktest.Prefix(t, client)
	holder := newRedis(t, client, prefix, lock.RedisOptions{})
	const wait = 200 * time.Millisecond
	waiter := newRedis(t, client, prefix, lock.RedisOptions{Wait: wait})

	unlock := mustLock(t, holder, "k")
	wantBusy(t, waiter, wait)
	if got := waiter.Stats().Busy; got != 1 {
		t.Errorf("Busy = %d, want 1", got)
	}

	unlock(t.Context())
	mustLock(t, waiter, "k")(t.Context())
}

func TestRedisContext(t *testing.T) {
	client := locktest.Client(t)
	prefix := locktest.Prefix(t, client)
	holder := newRedis(t, client, prefix, lock.RedisOptions{})
	waiter := newRedis(t, client, prefix, lock.RedisOptions{Wait: 10 * time.Second})
	defer mustLock(t, holder, "k")(t.Context())

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := waiter.Lock(ctx, "k")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock = %v, want the deadline exceeded", err)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("returned after %s, want about 200ms", elapsed)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := waiter.Lock(ctx, "k")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock = %v, want canceled", err)
		}
	})
	t.Run("ended before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := waiter.Lock(ctx, "free"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock = %v, want canceled", err)
		}
		if held(t, client, prefix, "free") {
			t.Error("lock taken with an ended context")
		}
	})
}

func TestRedisMultiKeyPartialFailure(t *testing.T) {
	client := locktest.Client(t)
	prefix := locktest.Prefix(t, client)
	holder := newRedis(t, client, prefix, lock.RedisOptions{})
	waiter := newRedis(t, client, prefix, lock.RedisOptions{Wait: 100 * time.Millisecond})

	unlockB := mustLock(t, holder, "b")
	_, err := waiter.Lock(t.Context(), "a", "b", "c")
	wantCode(t, err, reservation.EABORTED)
	if !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("error %q does not name the busy key b", err)
	}
	if held(t, client, prefix, "a") || held(t, client, prefix, "c") {
		t.Error("a or c held after the failed Lock, want both released")
	}

	unlockB(t.Context())
	unlock := mustLock(t, waiter, "a", "b", "c")
	for _, k := range []string{"a", "b", "c"} {
		if !held(t, client, prefix, k) {
			t.Errorf("%s not held after Lock", k)
		}
	}
	unlock(t.Context())
	for _, k := range []string{"a", "b", "c"} {
		if held(t, client, prefix, k) {
			t.Errorf("%s held after unlock", k)
		}
	}
	if s := waiter.Stats(); s.Lost != 0 {
		t.Errorf("Lost = %d, want 0", s.Lost)
	}
}

// TestRedisLeaseLapses: a holder that can no longer reach Redis (as one that crashed) stops
// renewing, and its lock is free again one TTL later; its late release then does not touch the
// next holder's lock. The TTL is shortened to 200ms to keep the test short;
// TestRedisCrashedHolderDefaults and the chaos suite keep the default.
func TestRedisLeaseLapses(t *testing.T) {
	var d countingDialer
	client := locktest.Client(t)
	prefix := locktest.Prefix(t, client)
	opts := lock.ClientOptions(locktest.Addr())
	opts.Dialer = d.dial
	opts.ClientName = "holder-" + strings.Trim(prefix, ":")
	holderClient := redis.NewClient(opts)
	defer holderClient.Close()
	var logs bytes.Buffer
	const ttl = 200 * time.Millisecond
	holder := newRedis(t, holderClient, prefix, lock.RedisOptions{
		TTL:    ttl,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	other := newRedis(t, client, prefix, lock.RedisOptions{Wait: 2 * time.Second})

	unlockHolder := mustLock(t, holder, "k")
	// Cut the holder off Redis: its renewals fail from now on.
	d.down.Store(true)
	killClients(t, client, opts.ClientName)
	unlockOther := mustLock(t, other, "k") // waits for the lease to lapse
	d.down.Store(false)
	unlockHolder(t.Context()) // too late: must not release other's lock

	if got := holder.Stats().Lost; got != 1 {
		t.Errorf("Lost = %d, want 1", got)
	}
	if !strings.Contains(logs.String(), "lock lost") || !strings.Contains(logs.String(), prefix+"lock:{k}") {
		t.Errorf("log %q does not report the lost lock", logs.String())
	}
	if !held(t, client, prefix, "k") {
		t.Fatal("the late release deleted the lock of the next holder")
	}
	unlockOther(t.Context())
	if held(t, client, prefix, "k") {
		t.Error("k held after its holder released it")
	}
	if got := other.Stats().Lost; got != 0 {
		t.Errorf("Lost = %d for the next holder, want 0", got)
	}
}

// TestRedisLeaseRenewed: a holder that keeps a lock for several TTLs keeps it, its lease renewed,
// and a waiter gives up at its wait bound. The TTL is shortened to 300ms so that several
// renewals fit in a short test.
func TestRedisLeaseRenewed(t *testing.T) {
	client := locktest.Client(t)
	prefix := locktest.Prefix(t, client)
	const ttl = 300 * time.Millisecond
	holder := newRedis(t, client, prefix, lock.RedisOptions{TTL: ttl})
	waiter := newRedis(t, client, prefix, lock.RedisOptions{Wait: 4 * ttl})

	unlock := mustLock(t, holder, "k")
	wantBusy(t, waiter, 4*ttl)
	if got := holder.Stats().Renewed; got < 3 {
		t.Errorf("Renewed = %d after holding for 4 TTLs, want at least 3", got)
	}
	unlock(t.Context())
	if got := holder.Stats().Lost; got != 0 {
		t.Errorf("Lost = %d, want 0", got)
	}
	mustLock(t, waiter, "k")(t.Context())
}

// TestRedisDefaultLease: with the default settings the lease of a lock is DefaultTTL, at most 3s.
func TestRedisDefaultLease(t *testing.T) {
	client := locktest.Client(t)
	prefix := locktest.Prefix(t, client)
	r := newRedis(t, client, prefix, lock.RedisOptions{})
	unlock := mustLock(t, r, "k")
	defer unlock(t.Context())
	pttl, err := client.PTTL(t.Context(), r.Key("k")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= 0 || pttl > lock.DefaultTTL || lock.DefaultTTL > 3*time.Second {
		t.Errorf("lease %s (default %s), want positive, at most the default, and the default at most 3s", pttl, lock.DefaultTTL)
	}
}

// killClients closes the server side of the connections named name.
func killClients(t *testing.T, admin *redis.Client, name string) {
	t.Helper()
	list, err := admin.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for line := range strings.Lines(list) {
		var id string
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if f == "name="+name {
				if err := admin.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
					t.Fatal(err)
				}
				killed++
			}
		}
	}
	if killed == 0 {
		t.Fatalf("no connection named %s", name)
	}
}

func TestSlot(t *testing.T) {
	// The examples of the Redis Cluster specification.
	for key, want := range map[string]uint16{"123456789": 12739, "{user1000}.following": lock.Slot("user1000"), "foo{}{bar}": lock.Slot("foo{}{bar}")} {
		if got := lock.Slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
	if lock.Slot("rsv:lock:{a}") == lock.Slot("rsv:lock:{b}") && lock.Slot("rsv:lock:{b}") == lock.Slot("rsv:lock:{c}") {
		t.Error("three resources in one slot: the hash tag is not the resource")
	}
}

func TestRedisUnlock(t *testing.T) {
	client := locktest.Client(t)
	prefix := locktest.Prefix(t, client)
	r := newRedis(t, client, prefix, lock.RedisOptions{Wait: 100 * time.Millisecond})

	// A key given twice is taken once instead of waiting on itself.
	unlock := mustLock(t, r, "a", "b", "a")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	unlock(ctx) // releases even though the request's context has ended
	unlock(ctx) // and only once
	if held(t, client, prefix, "a") || held(t, client, prefix, "b") {
		t.Error("held after unlock with an ended context")
	}
	if got := r.Stats(); got.Lost != 0 || got.Acquired != 1 {
		t.Errorf("stats %+v, want 1 acquired and none lost", got)
	}
	mustLock(t, r)(t.Context()) // no keys: nothing to do
}

// countingDialer dials addr and counts its calls; while down is set it fails instead.
type countingDialer struct {
	dials atomic.Int64
	down  atomic.Bool
}

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.dials.Add(1)
	if d.down.Load() {
		return nil, errors.New("redis down for the test")
	}
	var dialer net.Dialer
	return dialer.DialContext(ctx, network, addr)
}

// frozenAddr returns the address of a server that accepts connections and never answers.
func frozenAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestRedisUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(testing.TB) string
	}{
		{"closed port", locktest.ClosedAddr},
		{"frozen", frozenAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d countingDialer
			opts := lock.ClientOptions(tc.addr(t))
			opts.Dialer = d.dial
			client := redis.NewClient(opts)
			defer client.Close()
			// The breaker's cooldown runs on a clock the test moves: no assertion rests on
			// how long a call took, which a loaded machine stretches.
			clock := newClock()
			r := newRedis(t, client, "test:", lock.RedisOptions{Now: clock.Now})

			_, err := r.Lock(t.Context(), "k")
			wantCode(t, err, reservation.EUNAVAILABLE)
			var netErr net.Error
			if !errors.As(err, &netErr) || !strings.Contains(err.Error(), `"k"`) {
				t.Errorf("Lock = %v, want an error naming k and wrapping the network error", err)
			}

			// The breaker is open: the second call fails without touching Redis.
			dials := d.dials.Load()
			_, err = r.Lock(t.Context(), "k")
			wantCode(t, err, reservation.EUNAVAILABLE)
			if !errors.Is(err, lock.ErrBreakerOpen) {
				t.Errorf("Lock = %v, want ErrBreakerOpen", err)
			}
			if got := d.dials.Load(); got != dials {
				t.Errorf("second Lock dialed %d times, want 0", got-dials)
			}

			// After the cooldown (the default, 1s) Redis is tried again.
			clock.Advance(time.Second)
			_, err = r.Lock(t.Context(), "k")
			wantCode(t, err, reservation.EUNAVAILABLE)
			if errors.Is(err, lock.ErrBreakerOpen) || d.dials.Load() == dials {
				t.Errorf("Lock after the cooldown = %v without dialing, want Redis tried again", err)
			}
			if got := r.Stats(); got.Unavailable != 3 || got.Acquired != 0 {
				t.Errorf("stats %+v, want 3 unavailable and none acquired", got)
			}
		})
	}
}

// clock is a settable clock for the breaker's cooldown.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func TestRedisRecovers(t *testing.T) {
	var d countingDialer
	d.down.Store(true)
	opts := lock.ClientOptions(locktest.Addr())
	opts.Dialer = d.dial
	client := redis.NewClient(opts)
	defer client.Close()
	prefix := locktest.Prefix(t, locktest.Client(t))
	clock := newClock()
	r := newRedis(t, client, prefix, lock.RedisOptions{Now: clock.Now})

	_, err := r.Lock(t.Context(), "k")
	wantCode(t, err, reservation.EUNAVAILABLE)
	d.down.Store(false)
	if _, err := r.Lock(t.Context(), "k"); !errors.Is(err, lock.ErrBreakerOpen) {
		t.Fatalf("Lock during the cooldown = %v, want ErrBreakerOpen", err)
	}
	clock.Advance(time.Second) // the default cooldown
	mustLock(t, r, "k")(t.Context())
	mustLock(t, r, "k")(t.Context())
	if got := r.Stats(); got.Acquired != 2 || got.Unavailable != 2 {
		t.Errorf("stats %+v, want 2 acquired and 2 unavailable", got)
	}
}

func TestLocalExclusion(t *testing.T) {
	l := lock.NewLocal(30 * time.Second)
	exclusion(t, l)
	if n := lock.LocalLen(l); n != 0 {
		t.Errorf("%d keys left in the map, want 0", n)
	}
}

func TestLocalBusy(t *testing.T) {
	const wait = 100 * time.Millisecond
	l := lock.NewLocal(wait)
	unlock := mustLock(t, l, "k")
	wantBusy(t, l, wait)
	if n := lock.LocalLen(l); n != 1 {
		t.Errorf("%d keys in the map while k is held, want 1", n)
	}
	unlock(t.Context())
	unlock(t.Context()) // a second unlock does nothing
	if n := lock.LocalLen(l); n != 0 {
		t.Errorf("%d keys left in the map, want 0", n)
	}
	mustLock(t, l, "k")(t.Context())
}

func TestLocalContext(t *testing.T) {
	l := lock.NewLocal(10 * time.Second)
	unlock := mustLock(t, l, "k")

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := l.Lock(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock = %v, want canceled", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v, want the deadline exceeded", err)
	}
	unlock(t.Context())
	if n := lock.LocalLen(l); n != 0 {
		t.Errorf("%d keys left in the map, want 0", n)
	}
}

func TestLocalMultiKeyPartialFailure(t *testing.T) {
	l := lock.NewLocal(100 * time.Millisecond)
	unlockB := mustLock(t, l, "b")

	_, err := l.Lock(t.Context(), "a", "b", "c")
	wantCode(t, err, reservation.EABORTED)
	if !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("error %q does not name the busy key b", err)
	}
	if n := lock.LocalLen(l); n != 1 {
		t.Errorf("%d keys in the map, want only b", n)
	}
	mustLock(t, l, "a")(t.Context()) // a was released

	unlockB(t.Context())
	mustLock(t, l, "a", "b", "a", "c")(t.Context())
	if n := lock.LocalLen(l); n != 0 {
		t.Errorf("%d keys left in the map, want 0", n)
	}
}

// wantBusy checks that l, whose wait bound is wait, gives up on the held key "k" with EABORTED
// after that bound, naming the key and the wait.
func wantBusy(t *testing.T, l reservation.Locker, wait time.Duration) {
	t.Helper()
	start := time.Now()
	_, err := l.Lock(t.Context(), "k")
	elapsed := time.Since(start)
	wantCode(t, err, reservation.EABORTED)
	if !strings.Contains(err.Error(), `"k"`) || !strings.Contains(err.Error(), wait.String()) {
		t.Errorf("error %q does not name the key and the wait", err)
	}
	if elapsed < wait || elapsed > 2*time.Second {
		t.Errorf("gave up after %s, want %s", elapsed, wait)
	}
}

// TestRedisManyKeysExclusion: replicas locking overlapping sets of keys, each set in sorted
// order, never hold one key together and never deadlock.
func TestRedisManyKeysExclusion(t *testing.T) {
	c := []*redis.Client{locktest.Client(t), locktest.Client(t), locktest.Client(t)}
	prefix := locktest.Prefix(t, c[0])
	keys := []string{"a", "b", "c", "d", "e"}
	var inside [5]atomic.Int64
	var overlapped atomic.Int64
	var wg sync.WaitGroup
	for g := range 24 {
		l := newRedis(t, c[g%3], prefix, lock.RedisOptions{Wait: 30 * time.Second})
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 20 {
				var idx []int
				for i := range keys {
					if rng.IntN(2) == 0 {
						idx = append(idx, i)
					}
				}
				var set []string
				for _, i := range idx {
					set = append(set, keys[i])
				}
				unlock, err := l.Lock(t.Context(), set...)
				if err != nil {
					t.Errorf("Lock(%q): %v", set, err)
					return
				}
				for _, i := range idx {
					if inside[i].Add(1) > 1 {
						overlapped.Add(1)
					}
				}
				time.Sleep(100 * time.Microsecond)
				for _, i := range idx {
					inside[i].Add(-1)
				}
				unlock(t.Context())
			}
		})
	}
	wg.Wait()
	if n := overlapped.Load(); n != 0 {
		t.Errorf("%d times two holders held one key", n)
	}
	for _, k := range keys {
		if held(t, c[0], prefix, k) {
			t.Errorf("%s held after every unlock", k)
		}
	}
}
