package lock_test

import (
	"context"
	"fmt"
	"testing"

	"reservation/lock"
	"reservation/lock/locktest"
)

// BenchmarkRedisLockRoundTrip takes and releases one resource's lock: the two Redis round
// trips every write pays before it reaches MySQL.
func BenchmarkRedisLockRoundTrip(b *testing.B) {
	client := locktest.Client(b)
	l := lock.NewRedis(client, lock.RedisOptions{Prefix: locktest.Prefix(b, client)})
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		unlock, err := l.Lock(ctx, fmt.Sprint("r", i%100))
		if err != nil {
			b.Fatal(err)
		}
		unlock(ctx)
	}
}
