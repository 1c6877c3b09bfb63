package lock_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"reservation"
	"reservation/lock"
	"reservation/lock/redistest"
)

func newClient(t *testing.T, cfg lock.ClientConfig) redis.UniversalClient {
	t.Helper()
	c, err := lock.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRedisCluster: on a 3-master cluster the locks of different resources spread over the
// masters, a call on resources in different slots takes them all without CROSSSLOT, and
// replicas still exclude each other, on single and overlapping sets of resources.
func TestRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	cfg := lock.ClientConfig{Mode: lock.ModeCluster, Addrs: c.Addrs()[:2]} // seeds: any nodes
	c1, c2 := newClient(t, cfg), newClient(t, cfg)
	opts := lock.RedisOptions{Wait: 30 * time.Second}
	r1, r2 := newRedis(t, c1, "rsv:", opts), newRedis(t, c2, "rsv:", opts)

	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprint("room-", i))
	}
	unlock := mustLock(t, r1, keys...)
	masters := map[string]int{}
	for _, k := range keys {
		masters[c.MasterOf(t, int(lock.Slot(r1.Key(k)))).Addr]++
	}
	if len(masters) != 3 {
		t.Errorf("30 resources' locks on %d masters (%v), want all 3", len(masters), masters)
	}
	for _, k := range keys {
		if n, err := c1.Exists(t.Context(), r1.Key(k)).Result(); err != nil || n != 1 {
			t.Errorf("lock of %s not in the cluster: %d, %v", k, n, err)
		}
	}
	unlock(t.Context())
	if n, err := c1.Exists(t.Context(), r1.Key(keys[0]), r1.Key(keys[0])).Result(); err != nil || n != 0 {
		t.Errorf("lock still there after unlock: %d, %v", n, err)
	}

	exclusion(t, r1, r2)
	manyKeysExclusion(t, []*lock.Redis{r1, r2})
	for _, r := range []*lock.Redis{r1, r2} {
		if s := r.Stats(); s.Unavailable != 0 || s.Lost != 0 {
			t.Errorf("stats %+v, want nothing unavailable or lost", s)
		}
	}
}

// manyKeysExclusion runs 24 goroutines that lock random subsets of 5 keys, and checks that no
// two hold a key together.
func manyKeysExclusion(t *testing.T, lockers []*lock.Redis) {
	keys := []string{"a", "b", "c", "d", "e"}
	var inside [5]atomic.Int64
	var overlapped atomic.Int64
	var wg sync.WaitGroup
	for g := range 24 {
		l := lockers[g%len(lockers)]
		wg.Go(func() {
			for n := range 20 {
				var idx []int
				for i := range keys {
					if (g+n+i)%3 != 0 {
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
}

// TestRedisNoHoldWhileWaiting: a call on two resources, one of them held by another, does not
// keep the free one while it waits.
func TestRedisNoHoldWhileWaiting(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	client := newClient(t, lock.ClientConfig{Mode: lock.ModeCluster, Addrs: c.Addrs()})
	holder := newRedis(t, client, "rsv:", lock.RedisOptions{})
	waiter := newRedis(t, client, "rsv:", lock.RedisOptions{Wait: 10 * time.Second})
	other := newRedis(t, client, "rsv:", lock.RedisOptions{Wait: 200 * time.Millisecond})
	// Two resources whose keys are on different masters.
	a, b := "a", ""
	for i := range 100 {
		k := fmt.Sprint("b", i)
		if c.MasterOf(t, int(lock.Slot(holder.Key(k)))) != c.MasterOf(t, int(lock.Slot(holder.Key(a)))) {
			b = k
			break
		}
	}
	unlockB := mustLock(t, holder, b)
	waited := make(chan error, 1)
	go func() {
		unlock, err := waiter.Lock(t.Context(), a, b)
		if err == nil {
			unlock(t.Context())
		}
		waited <- err
	}()
	time.Sleep(100 * time.Millisecond) // the waiter is retrying now
	// a stays free for others while the waiter waits for b.
	for range 5 {
		if err := func() error {
			unlock, err := other.Lock(t.Context(), a)
			if err == nil {
				unlock(t.Context())
			}
			return err
		}(); err != nil {
			t.Fatalf("a held by the caller waiting for b: %v", err)
		}
	}
	unlockB(t.Context())
	if err := <-waited; err != nil {
		t.Fatalf("the waiter never got a and b: %v", err)
	}
}

// TestRedisSentinelFailover: a locker on a Sentinel deployment follows the promotion of the
// replica after its master is SIGKILLed, without a new client; the lease of locks the dead
// master held ends on the promoted one too.
func TestRedisSentinelFailover(t *testing.T) {
	d := redistest.StartSentinel(t)
	client := newClient(t, lock.ClientConfig{Mode: lock.ModeSentinel, MasterName: redistest.MasterName, Addrs: d.SentinelAddrs()})
	r := newRedis(t, client, "rsv:", lock.RedisOptions{})
	mustLock(t, r, "before")(t.Context())
	// A lock whose holder dies with the master: it reached the replica, and must not outlive
	// its lease there.
	crashed := lock.NewRedis(newClient(t, lock.ClientConfig{Addrs: []string{d.Master.Addr}}), lock.RedisOptions{Prefix: "rsv:"})
	// Never released before the master dies: its holder "crashes" with the master. (Released at
	// the end only to stop its renewing goroutine.)
	unlockOrphan := mustLock(t, crashed, "orphan")
	t.Cleanup(func() { unlockOrphan(context.Background()) })
	if err := d.Master.Client(t).Do(t.Context(), "WAIT", 1, 1000).Err(); err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	d.Master.Kill()
	var firstOK time.Duration
	var unavailable int
	for ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second); ; {
		unlock, err := r.Lock(ctx, "after")
		if err == nil {
			unlock(ctx)
			firstOK = time.Since(killed)
			cancel()
			break
		}
		if reservation.ErrorCode(err) != reservation.EUNAVAILABLE || ctx.Err() != nil {
			cancel()
			t.Fatalf("Lock after the master's death: %v", err)
		}
		unavailable++
		time.Sleep(50 * time.Millisecond)
	}
	addr, err := redis.NewSentinelClient(&redis.Options{Addr: d.Sentinels[0].Addr}).GetMasterAddrByName(t.Context(), redistest.MasterName).Result()
	if err != nil || strings.Join(addr, ":") != d.Replica.Addr {
		t.Fatalf("master is %v (%v), want the promoted replica %s", addr, err, d.Replica.Addr)
	}
	// The orphan's lock expires on the promoted master within its lease.
	waitStart := time.Now()
	waiter := newRedis(t, client, "rsv:", lock.RedisOptions{Wait: 10 * time.Second})
	mustLock(t, waiter, "orphan")(t.Context())
	t.Logf("sentinel failover: locks taken again %s after the master's SIGKILL (%d lock calls UNAVAILABLE meanwhile, the writes going on under the database guard); the dead holder's lock free %s later",
		firstOK.Round(time.Millisecond), unavailable, time.Since(waitStart).Round(time.Millisecond))
	if d := time.Since(waitStart); d > lock.DefaultTTL+time.Second {
		t.Errorf("the dead holder's lock outlived its lease on the promoted master: free after %s", d)
	}
}

// TestRedisClusterMasterKill: after the master of a slot is SIGKILLed, lock calls on its
// resources fail fast (the write goes on under the database guard) until its replica is
// promoted, and then take locks again, with the same client.
func TestRedisClusterMasterKill(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	client := newClient(t, lock.ClientConfig{Mode: lock.ModeCluster, Addrs: c.Addrs()})
	r := newRedis(t, client, "rsv:", lock.RedisOptions{})
	mustLock(t, r, "k")(t.Context())
	master := c.MasterOf(t, int(lock.Slot(r.Key("k"))))
	master.Kill()
	killed := time.Now()
	var unavailable, slow int
	var longest time.Duration
	for ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second); ; {
		start := time.Now()
		unlock, err := r.Lock(ctx, "k")
		longest = max(longest, time.Since(start))
		if err == nil {
			unlock(ctx)
			cancel()
			break
		}
		if reservation.ErrorCode(err) != reservation.EUNAVAILABLE || ctx.Err() != nil {
			cancel()
			t.Fatalf("Lock after the master's death: %v", err)
		}
		// Two attempts of 250ms at most, plus slack for a loaded machine under -race.
		if time.Since(start) > time.Second {
			slow++
		}
		unavailable++
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("cluster master kill: locks taken again %s after the SIGKILL; %d lock calls UNAVAILABLE meanwhile (%d slower than 1s), the longest %s",
		time.Since(killed).Round(time.Millisecond), unavailable, slow, longest.Round(time.Millisecond))
	if slow > 0 {
		t.Errorf("%d lock calls took over 1s to fail: a dead master must cost a write little", slow)
	}
}
