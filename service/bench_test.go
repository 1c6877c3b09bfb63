package service_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"reservation/lock"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
)

// BenchmarkReserve books one-hour windows, each on its own resource, through a real gRPC
// server with the Redis lock: the full write path with no conflicts. The variants add a
// request id (stored with the outcome) or make the reservation a hold.
//
//	go test -run '^$' -bench Reserve -benchtime 2000x ./service/
func BenchmarkReserve(b *testing.B) {
	for _, v := range []struct {
		name string
		edit func(*pb.ReserveRequest, int64)
	}{
		{"plain", func(*pb.ReserveRequest, int64) {}},
		{"request_id", func(r *pb.ReserveRequest, i int64) { r.RequestId = fmt.Sprint("bench-request-", i) }},
		{"hold", func(r *pb.ReserveRequest, _ int64) { r.Hold = durationpb.New(10 * time.Minute) }},
	} {
		b.Run(v.name, func(b *testing.B) {
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
					req := &pb.ReserveRequest{Reservation: booking(fmt.Sprint("bench-", i%1000), float64(i/1000), float64(i/1000+1))}
					v.edit(req, i)
					ctx, cancel := ctxWithTimeout(10 * time.Second)
					_, err := c.Reserve(ctx, req)
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
