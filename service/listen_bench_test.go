package service_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"reservation/lock"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/queue"
	"reservation/repo"
	"reservation/repo/repotest"
)

// BenchmarkListenLatency measures how long a change takes to reach listeners: two replicas
// with the Redis lock, writers on both aiming at 1,000 reservations/s in all, and 100
// listeners spread over the replicas. Latency runs from the reservation's created_at, taken
// before its transaction starts, to its arrival at a listener: an upper bound on
// commit-to-delivery. b.N is the number of reservations written.
//
//	go test -run '^$' -bench ListenLatency -benchtime 5000x ./service/
func BenchmarkListenLatency(b *testing.B) {
	const listeners, writers, rate = 100, 16, 1000
	_, dsn := repotest.NewDB(b)
	client := locktest.Client(b)
	prefix := locktest.Prefix(b, client)
	var replicas []*replica
	for range 2 {
		pool, err := repo.Open(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { pool.Close() })
		locker := lock.NewRedis(client, lock.RedisOptions{Prefix: prefix, Logger: quiet})
		// The production defaults: a replica that did not sequence a change finds it within 20ms.
		feed := queue.Options{PollInterval: 20 * time.Millisecond, StampInterval: 20 * time.Millisecond}
		replicas = append(replicas, startReplicaWith(b, pool, locker, feed))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lat := make([][]time.Duration, listeners)
	var ready, done sync.WaitGroup
	for i := range listeners {
		ready.Add(1)
		done.Go(func() {
			stream, err := replicas[i%2].client.Listen(ctx, &pb.ListenRequest{})
			if err == nil {
				_, err = stream.Header()
			}
			ready.Done()
			if err != nil {
				b.Error(err)
				return
			}
			for len(lat[i]) < b.N {
				m, err := stream.Recv()
				if err != nil {
					b.Errorf("listener %d after %d changes: %v", i, len(lat[i]), err)
					return
				}
				lat[i] = append(lat[i], time.Since(m.GetReservation().GetCreatedAt().AsTime()))
			}
		})
	}
	ready.Wait()

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < b.N; i += writers {
				// Pace the writers: reservation i is due at start + i/rate.
				if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
					time.Sleep(d)
				}
				r := booking(fmt.Sprint("lat-", i%500), float64(i/500), float64(i/500+1))
				if _, err := replicas[w%2].client.Reserve(ctx, &pb.ReserveRequest{Reservation: r}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	wrote := time.Since(start)
	done.Wait()
	b.StopTimer()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/wrote.Seconds(), "writes/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
