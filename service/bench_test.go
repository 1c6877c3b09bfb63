package service_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"reservation/lock"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
)

// BenchmarkReserve books one-hour windows, each on its own resource, through a real gRPC
// server with the Redis lock: the full write path with no conflicts.
//
//	go test -run '^$' -bench Reserve -benchtime 2000x ./service/
func BenchmarkReserve(b *testing.B) {
	db := newDB(b)
	client := locktest.Client(b)
	locker := lock.NewRedis(client, lock.RedisOptions{Prefix: locktest.Prefix(b, client), Logger: quiet})
	c := startReplica(b, db, locker).client
	var n atomic.Int64
	b.SetParallelism(8) // 8 × GOMAXPROCS clients
	b.ResetTimer()
	b.RunParallel(func(pb_ *testing.PB) {
		for pb_.Next() {
			i := n.Add(1)
			r := booking(fmt.Sprint("bench-", i%1000), float64(i/1000), float64(i/1000+1))
			ctx, cancel := ctxWithTimeout(10 * time.Second)
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: r})
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
